"""The workloads: one :class:`Workload` protocol, and the registry that finds a dataset's workload.

Every workload module (:mod:`.tabular`, :mod:`.images`, :mod:`.timeseries`, or one a catalog entry adds)
exposes the same steps with the same signature: ``step(data, cfg, work)``, where ``data`` is what
:meth:`Workload.resolve` returned (a snapshot's data event, or a window of partition events), ``cfg`` the
dataset's typed config (:meth:`Workload.dataset_config`, with a run's overrides applied) and ``work`` the run's work
folder. Steps share files in the work folder, so each can be retried alone. Callers (the training DAGs,
``adhoc_training``, the CLI) never branch on the kind: they look the workload up here and call its steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from retrain import catalog

STEPS = ("resolve", "gate", "prepare", "train", "evaluate", "log_candidate")


@runtime_checkable
class Workload(Protocol):
    """The steps of a workload, in order. Every step after ``resolve`` takes ``(data, cfg, work)``."""

    WORKLOAD: str

    def dataset_config(self, dataset: str, overrides: Mapping[str, Any] | None = None) -> Any:
        """The dataset's typed config, with a run's overrides applied (ConfigError naming a bad one)."""

    def resolve(self, dataset: str, events: Sequence[Mapping[str, Any]], cfg: Any, *, key: str | None = None,
                scheduled: bool = True) -> dict:
        """The data a run trains on: from its triggering ``events``, or the snapshot version / window end
        ``key`` names (default: the newest committed). ``scheduled``: the workload's policy for automatic runs
        applies (a result with ``train: False`` and a ``reason`` says the run must not train)."""

    def gate(self, data: Mapping[str, Any], cfg: Any, work: str) -> dict:
        """The quality report's summary; DataQualityError (never retried) when the data fails its suite."""

    def prepare(self, data: Mapping[str, Any], cfg: Any, work: str) -> dict:
        """The training inputs in the work folder."""

    def train(self, data: Mapping[str, Any], cfg: Any, work: str) -> dict:
        """The trained model in the work folder."""

    def evaluate(self, data: Mapping[str, Any], cfg: Any, work: str) -> dict:
        """Test metrics beside the naive baselines (``evaluate.json`` in the work folder)."""

    def lineage_data(self, data: Mapping[str, Any]) -> dict:
        """What a candidate's lineage names of ``data`` (the event, or the window's last one with its partitions)."""

    def log_candidate(self, data: Mapping[str, Any], cfg: Any, work: str, *, coordinates: Mapping[str, Any],
                      quality: Mapping[str, Any], tags: Mapping[str, str] | None = None,
                      description: str | None = None) -> dict:
        """The MLflow candidate run; returns the candidate event's extra (also recorded on the run)."""


def workload(name: str) -> Workload:
    """The registered workload ``name`` (its module, imported now)."""
    entry = catalog.workload_entry(name)
    module = catalog.load(entry.module)
    missing = [step for step in (*STEPS, "dataset_config", "lineage_data") if not callable(getattr(module, step, None))]
    if missing:
        raise TypeError(f"workload {name!r} ({entry.module}) lacks the Workload steps {missing}")
    return module


def for_dataset(dataset: str) -> Workload:
    """The workload that trains ``dataset``."""
    return workload(catalog.dataset(dataset).workload)


def run(step: str, dataset: str, data: Mapping[str, Any], work: str, *, overrides: Mapping[str, Any] | None = None,
        **kwargs: Any) -> dict:
    """One step of ``dataset``'s workload on ``data``, with the dataset's config (and a run's overrides)."""
    if step not in STEPS[1:]:
        raise ValueError(f"step must be one of {STEPS[1:]}, got {step!r}")
    found = for_dataset(dataset)
    return getattr(found, step)(data, found.dataset_config(dataset, overrides), work, **kwargs)


def train_candidate(dataset: str, data: Mapping[str, Any], cfg: Any, work: str, *,
                    coordinates: Mapping[str, Any]) -> dict:
    """gate -> prepare -> train -> evaluate -> log_candidate on resolved ``data``: what a training DAG runs,
    in one process (the CLI). Returns the candidate event's extra."""
    found = for_dataset(dataset)
    quality = found.gate(data, cfg, work)
    found.prepare(data, cfg, work)
    found.train(data, cfg, work)
    found.evaluate(data, cfg, work)
    return found.log_candidate(data, cfg, work, coordinates=coordinates, quality=quality)


def log_candidate_run(*, workload_name: str, dataset: str, model: str, lineage, log_body: Callable[[], dict],
                      description: str, tags: Mapping[str, str] | None = None,
                      data_extra: Mapping[str, Any] | None = None) -> dict:
    """The candidate run every workload logs: ``tags`` set first inside the run, then the workload's
    ``log_body()``; the event's extra names the catalog's primary metric for ``model``."""
    from retrain import tracking

    def body() -> dict:
        if tags:
            import mlflow

            mlflow.set_tags(dict(tags))
        return log_body()

    result = tracking.candidate_run(workload=workload_name, dataset=dataset, model_name=model, lineage=lineage,
                                    log_body=body, description=description)
    return tracking.publish_candidate(model_name=model, dataset=dataset, result=result, lineage=lineage,
                                      primary_metric=catalog.model(model).primary_metric, data_extra=data_extra)


def evaluation_metrics(work: str) -> dict:
    """The metrics ``evaluate`` wrote to the work folder."""
    from retrain import storage

    return json.loads(storage.read_text(storage.join(work, "evaluate.json")))


def resolve_snapshot(dataset: str, events: Sequence[Mapping[str, Any]], *, key: str | None = None) -> dict:
    """The data event of the snapshot a run of a non-partitioned dataset trains: version ``key``, else the newest
    of its triggering ``events``, else the newest committed snapshot (SnapshotError when there is none, or
    when the newest is ambiguous)."""
    from retrain import snapshots
    from retrain.errors import SnapshotError
    from retrain.events import newest

    if key:
        snapshot = snapshots.load(dataset, str(key))
        if snapshot is None:
            raise SnapshotError(f"{dataset}: no committed snapshot with version {key!r} "
                                f"(newest: {[s.version for s in snapshots.committed(dataset)[-3:]]})")
        return snapshot.event_extra()
    if events:
        return newest(events, dataset)[0]
    head = snapshots.head(dataset)  # a growing dataset's newest snapshot holds everything before it
    if head is not None:
        return head.event_extra()
    available = snapshots.committed(dataset)
    if not available:
        raise SnapshotError(f"{dataset}: no committed snapshot to train on")
    # commit times have one-second resolution: never guess between snapshots committed in the same second
    order = [(s.manifest.get("sequence", 0), s.manifest.get("created_at", "")) for s in available]
    tied = [s.version for s, o in zip(available, order) if o == order[-1]]
    if len(tied) > 1:
        raise SnapshotError(f"{dataset}: the newest snapshot is ambiguous ({tied} were committed at "
                            f"{available[-1].manifest.get('created_at')}): name one with 'version'")
    return available[-1].event_extra()
