"""MLflow conventions: experiment and model names, lineage tags, idempotent candidate runs.

* One experiment per workload and dataset, named ``<workload>.<dataset>`` (stable, never timestamped).
* Runs carry the Airflow dag id, run id, try number and a link back; the data asset URI, version, sha256,
  rows and partitions; the quality verdict; the code version.
* A candidate run is keyed by ``retrain.run_key`` (dag id / run id / dataset), so a retried task returns the
  run it already finished instead of logging a second candidate.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from retrain import __version__
from retrain.settings import get_settings, project_root

log = logging.getLogger(__name__)

ROLE_CANDIDATE = "candidate"


@dataclass(frozen=True)
class Lineage:
    """Where a run came from: the orchestrator's coordinates and the exact data it read."""

    dag_id: str
    run_id: str
    try_number: int = 1
    task_id: str = ""
    url: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)  # the triggering event's extra
    quality: Mapping[str, Any] = field(default_factory=dict)

    @property
    def run_key(self) -> str:
        return f"{self.dag_id}/{self.run_id}/{self.data.get('dataset', '')}"

    def tags(self) -> dict[str, str]:
        data = self.data
        partitions = data.get("partitions") or ([data["partition"]] if data.get("partition") else [])
        tags = {
            "airflow.dag_id": self.dag_id,
            "airflow.run_id": self.run_id,
            "airflow.try_number": str(self.try_number),
            "airflow.task_id": self.task_id,
            "airflow.url": self.url,
            "data.asset_uri": str(data.get("uri", "")),
            "data.version": str(data.get("version", "")),
            "data.sha256": str(data.get("sha256", "")),
            "data.rows": str(data.get("rows", "")),
            "data.partitions": ",".join(partitions),
            "data.source_files": ",".join(data.get("source_files", []))[:4000],
            # versions this run's snapshot supersedes (the freshness reconcile counts them as covered)
            "data.superseded": _joined(data.get("superseded_versions") or []),
            "quality.verdict": str(self.quality.get("verdict", "unknown")),
            "code.version": code_version(),
            "retrain.run_key": self.run_key,
        }
        return {k: v for k, v in tags.items() if v != ""}


def _joined(values, limit: int = 4900) -> str:
    """Comma-joined values within MLflow's tag length; dropped from the front (the oldest) when too many."""
    values = list(values)
    while values and len(",".join(values)) > limit:
        values.pop(0)
    return ",".join(values)


@functools.cache
def code_version() -> str:
    """Package version plus the git commit of the checkout, when there is one."""
    if sha := os.environ.get("RETRAIN_CODE_VERSION"):
        return sha
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=project_root(), capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        return f"{__version__}+g{sha}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def experiment_name(workload: str, dataset: str) -> str:
    return f"{workload}.{dataset}"


@functools.cache
def _configured(uri: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(uri)


def client():
    import mlflow
    from mlflow.tracking import MlflowClient

    settings = get_settings()
    _configured(settings.mlflow_tracking_uri)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri)


def ensure_experiment(name: str) -> str:
    """The experiment's id, creating it (with an explicit artifact root for local stores) if needed."""
    mlflow_client = client()
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    settings = get_settings()
    uri = settings.mlflow_tracking_uri
    artifact_location = None if uri.startswith("http") else f"{settings.mlflow_artifact_root.rstrip('/')}/{name}"
    try:
        return mlflow_client.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # created concurrently by another task
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def find_runs(experiment_id: str, run_key: str) -> list:
    escaped = run_key.replace("'", "\\'")
    return client().search_runs([experiment_id], filter_string=f"tags.`retrain.run_key` = '{escaped}'",
                                order_by=["attributes.start_time DESC"])


def _result(run) -> dict:
    tags = run.data.tags
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "model_uri": tags.get("retrain.model_uri", ""),
        "metrics": dict(run.data.metrics),
        "reused": True,
    }


def log_metric_history(history: Mapping[str, list[float]], prefix: str = "") -> None:
    """Per-iteration or per-epoch series, logged in batches (MLflow takes at most 1000 metrics a call)."""
    import time as _time

    import mlflow
    from mlflow.entities import Metric

    run_id = mlflow.active_run().info.run_id
    now = int(_time.time() * 1000)
    metrics = [Metric(f"{prefix}{name}", float(value), now, step) for name, values in history.items()
               for step, value in enumerate(values)]
    for start in range(0, len(metrics), 1000):
        client().log_batch(run_id, metrics=metrics[start:start + 1000])


def log_work_files(work: str, names: list[str], artifact_path: str, *, optional: bool = False) -> None:
    """Log files of a run's work folder (local or object store) as artifacts of the active MLflow run."""
    import mlflow

    from retrain import storage

    for name in names:
        location = storage.join(work, name)
        if optional and not storage.exists(location):
            continue
        with storage.local_path(location) as path:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)


QUALITY_REPORTS = ["quality_report.json", "quality_report.md"]


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return flat


def candidate_run(*, workload: str, dataset: str, model_name: str, lineage: Lineage,
                  log_body: Callable[[], dict], description: str = "") -> dict:
    """Log one candidate run, or return the one this DAG run already finished (idempotent retries).

    ``log_body`` runs inside the active MLflow run, logs params/metrics/artifacts/model and returns
    ``{"model_uri": ..., "metrics": {...}}``. A run left unfinished by an earlier crashed try is marked FAILED.
    """
    import mlflow

    experiment_id = ensure_experiment(experiment_name(workload, dataset))
    for run in find_runs(experiment_id, lineage.run_key):
        if run.info.status == "FINISHED" and run.data.tags.get("retrain.model_uri"):
            log.info("candidate run %s already logged for %s; reusing it", run.info.run_id, lineage.run_key)
            return _result(run)
        if run.info.status in ("RUNNING", "SCHEDULED"):
            client().set_terminated(run.info.run_id, "FAILED")
    tags = lineage.tags() | {"retrain.workload": workload, "retrain.dataset": dataset,
                             "retrain.model_name": model_name, "retrain.role": ROLE_CANDIDATE}
    if description:
        tags["mlflow.note.content"] = description
    run_name = f"{model_name}-{lineage.data.get('version', 'manual')}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        body = log_body()
        mlflow.set_tag("retrain.model_uri", body["model_uri"])
    return {"run_id": run.info.run_id, "experiment_id": experiment_id, "model_uri": body["model_uri"],
            "metrics": body["metrics"], "reused": False}


def publish_candidate(*, model_name: str, dataset: str, result: Mapping[str, Any], lineage: Lineage,
                      primary_metric: str, data_extra: Mapping[str, Any] | None = None) -> dict:
    """The candidate event's extra, also recorded on the run (``retrain.candidate_event``) so a promotion can be
    replayed from the run alone."""
    extra = candidate_event_extra(model_name=model_name, dataset=dataset, result=result, lineage=lineage,
                                  primary_metric=primary_metric, data_extra=data_extra)
    client().set_tag(result["run_id"], "retrain.candidate_event", json.dumps(extra))
    return extra


def candidate_event_extra(*, model_name: str, dataset: str, result: Mapping[str, Any], lineage: Lineage,
                          primary_metric: str, data_extra: Mapping[str, Any] | None = None) -> dict:
    """The candidate-model asset event's extra (design contract 2): a :class:`retrain.events.CandidateEvent`."""
    from retrain.events import CandidateEvent

    data = lineage.data
    return CandidateEvent(
        model=model_name,
        dataset=dataset,
        run_id=result["run_id"],
        experiment_id=result["experiment_id"],
        model_uri=result["model_uri"],
        metrics={k: float(v) for k, v in result["metrics"].items()},
        primary_metric=primary_metric,
        data={k: data.get(k) for k in ("uri", "version", "sha256", "rows", "partition")} | dict(data_extra or {}),
        quality_verdict=lineage.quality.get("verdict", "unknown"),
    ).extra()
