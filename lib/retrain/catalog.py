"""The catalog: every fact about a workload, a dataset and a registered model, in one place.

Everything else derives from it: the asset names (:mod:`retrain.assets`), the promotion DAGs' candidate lists,
the promotion step's held-out sets and baselines, the model factories, the ad-hoc DAG's kinds and datasets,
the CLI's choices and the demo's models. A new model is one entry per table here plus its workload module
(:func:`register` adds them at run time, e.g. for a test).

Plain data, importable without Airflow and without any heavy library: code is named by ``"module:attribute"``
strings and imported only when a step needs it (:func:`load`), so a DAG file parses in milliseconds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

PROMOTE, PROMOTE_PARTITIONED = "promote_models", "promote_partitioned_models"


@dataclass(frozen=True)
class WorkloadEntry:
    """A workload: one training DAG (its id is the workload's name), one config file, one module of steps."""

    name: str  # DAG id, ``configs/<name>.yaml``, the MLflow experiments' prefix
    module: str  # the module implementing :class:`retrain.workloads.Workload`
    kind: str  # the ``adhoc_training`` DAG's name for it
    resources: str = "cpu"  # default resource profile of ad-hoc runs: "cpu" or "gpu"
    config_model: str | None = None  # "module:Class" of its config when :mod:`retrain.config` does not know it

    @property
    def training_dag(self) -> str:
        return self.name


@dataclass(frozen=True)
class DatasetEntry:
    """A curated dataset: its asset (``curated/<name>``), its workload and how a landed arrival is ingested."""

    name: str
    workload: str
    ingest: str  # "module:function" with the signature ``(dataset, name, run_id) -> IngestResult``
    partitioned: bool = False
    # how an arrival looks when S3 notifications route it: one object ("file") or a folder completed by
    # _SUCCESS ("drop"); None: not routed, and ``not_routed`` says why
    arrives_as: str | None = "file"
    not_routed: str = ""


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: the dataset it is trained on and everything promotion needs to judge it."""

    name: str  # the registered model name (its candidate and champion assets are ``<name>.candidate|champion``)
    dataset: str
    primary_metric: str
    evaluation_set: str  # "module:function(run) -> (inputs, targets)": the candidate's held-out examples
    held_out: str  # which part of the snapshot those examples are, in words (recorded on every decision)
    baseline: str | None = None  # "module:function(run, n) -> predictions | None": the naive baseline
    factory: str | None = None  # "module:Class" building its untrained network (neural models)
    postprocess: str | None = None  # "module:function(output) -> labels" when scores are not labels
    policy: str | None = None  # its policy in configs/promotion.yaml (default: the model's name)
    scoring_queue: str = "default"  # the queue whose workers can score it (PyTorch lives on `gpu` workers)

    @property
    def policy_name(self) -> str:
        return self.policy or self.name


WORKLOADS: dict[str, WorkloadEntry] = {w.name: w for w in (
    WorkloadEntry("tabular_ml_training", "retrain.workloads.tabular", kind="tabular"),
    WorkloadEntry("image_dl_training", "retrain.workloads.images", kind="image", resources="gpu"),
    WorkloadEntry("time_series_training", "retrain.workloads.timeseries", kind="timeseries"),
)}

DATASETS: dict[str, DatasetEntry] = {d.name: d for d in (
    DatasetEntry("mnist", "image_dl_training", "retrain.ingest.images:ingest", arrives_as="drop"),
    DatasetEntry("cifar10", "image_dl_training", "retrain.ingest.images:ingest", arrives_as="drop"),
    DatasetEntry("ticks", "time_series_training", "retrain.ingest.ticks:ingest", partitioned=True, arrives_as=None,
                 not_routed="tick partitions land on ingest_ticks' partition timetable"),
    DatasetEntry("household_power", "tabular_ml_training", "retrain.ingest.power:ingest"),
)}

_PROMOTE = "retrain.workloads.promote"
MODELS: dict[str, ModelEntry] = {m.name: m for m in (
    ModelEntry("mnist_cnn", "mnist", "test_accuracy", evaluation_set="retrain.workloads.images:evaluation_set",
               held_out="test split of every drop so far", baseline="retrain.workloads.images:majority_baseline",
               factory="retrain.models.mnist_cnn:MnistCNN", scoring_queue="gpu"),
    ModelEntry("cifar10_cnn", "cifar10", "test_accuracy", evaluation_set="retrain.workloads.images:evaluation_set",
               held_out="test split of every drop so far", baseline="retrain.workloads.images:majority_baseline",
               factory="retrain.models.cifar10_cnn:Cifar10CNN", scoring_queue="gpu"),
    ModelEntry("ticks_direction_lgbm", "ticks", "test_accuracy",
               evaluation_set=f"{_PROMOTE}:label_frame_eval_set",
               held_out="test partition (the window's last day)", baseline=f"{_PROMOTE}:ticks_majority",
               postprocess=f"{_PROMOTE}:up_or_down"),
    ModelEntry("household_power_lgbm", "household_power", "test_rmse",
               evaluation_set=f"{_PROMOTE}:target_frame_eval_set",
               held_out="test tail of the window (the last split.test_days days, hourly)",
               baseline=f"{_PROMOTE}:seasonal_naive"),
)}


class View(Mapping):
    """A read-only mapping computed from the catalog on every access, so an entry registered at run time
    (:func:`register`) is seen by every module that reads a name derived with it (e.g. ``assets.MODELS``)."""

    def __init__(self, build: Callable[[], dict]):
        self._build = build

    def __getitem__(self, key):
        return self._build()[key]

    def __iter__(self) -> Iterator:
        return iter(self._build())

    def __len__(self) -> int:
        return len(self._build())

    def __repr__(self) -> str:
        return repr(self._build())


def load(target: str) -> Any:
    """The object a ``"module:attribute"`` string names (the module is imported now, not at catalog import)."""
    module, _, attribute = target.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded


def workload_entry(name: str) -> WorkloadEntry:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise KeyError(f"unknown workload {name!r}; known: {sorted(WORKLOADS)}") from None


def dataset(name: str) -> DatasetEntry:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None


def model(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODELS)}") from None


def model_for_dataset(name: str) -> ModelEntry:
    """The registered model trained on a dataset (one per dataset)."""
    for entry in MODELS.values():
        if entry.dataset == name:
            return entry
    raise KeyError(f"no registered model is trained on dataset {name!r}; known: "
                   f"{sorted(m.dataset for m in MODELS.values())}")


def datasets_of(workload: str) -> list[str]:
    return [d.name for d in DATASETS.values() if d.workload == workload]


def promotion_dag(model_name: str) -> str:
    """Candidates of partitioned datasets carry a partition key and are judged by their own promotion DAG."""
    return PROMOTE_PARTITIONED if DATASETS[MODELS[model_name].dataset].partitioned else PROMOTE


def register(*entries: WorkloadEntry | DatasetEntry | ModelEntry) -> None:
    """Add entries to the catalog (a new workload, dataset or model; replaces one of the same name)."""
    for entry in entries:
        table: dict = {WorkloadEntry: WORKLOADS, DatasetEntry: DATASETS, ModelEntry: MODELS}[type(entry)]
        table[entry.name] = entry

