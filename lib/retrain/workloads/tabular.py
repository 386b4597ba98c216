"""The tabular workload's steps, one function per Airflow task; plain values in, plain values out.

gate -> prepare -> train -> evaluate -> log_candidate. Steps share files in the run's work folder
(``$RETRAIN_DATA_ROOT/work/train/<dag>/<run>/<dataset>``), so each task can be retried alone.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from typing import Any

from retrain import config, quality, snapshots, storage, tracking
from retrain.data import power
from retrain.events import check_data_event

WORKLOAD = "tabular_ml_training"
log = logging.getLogger(__name__)

# dataset -> function building the frame its quality suite validates
QUALITY_FRAMES = {"household_power": power.quality_frame}


def dataset_config(dataset: str, overrides: Mapping[str, Any] | None = None) -> config.TabularDataset:
    """The dataset's settings; a scheduled run takes no overrides (``adhoc_training`` validates its own)."""
    if overrides:
        raise config.ConfigError(f"{WORKLOAD}: runs of {dataset} take no overrides (got {dict(overrides)}); "
                                 "ad hoc settings go through adhoc_training")
    return config.dataset_settings(WORKLOAD, dataset)


def resolve(dataset: str, events, cfg: config.TabularDataset, *, key: str | None = None,
            scheduled: bool = True) -> dict:
    """The data event of the snapshot to train: version ``key``, else the newest event, else the newest snapshot."""
    from retrain.workloads import resolve_snapshot

    return resolve_snapshot(dataset, events, key=key)


def gate(event: Mapping[str, Any], cfg: config.TabularDataset, work: str) -> dict:
    """Validate the snapshot the event names: what its arrival added plus the training window (raise
    DataQualityError, never retried, when a rule fails or the window is shorter than training needs)."""
    dataset = event.get("dataset", "household_power")
    extra = check_data_event(event, dataset)
    snapshot = snapshots.from_uri(extra["uri"])
    snapshots.verify(snapshot, extra["sha256"])
    table, start, end = _tabular().gate_table(snapshot, cfg)
    frame = QUALITY_FRAMES[dataset](table)
    report = quality.validate(dataset, frame, version=snapshot.version, report_dir=storage.join(work, "quality"))
    quality.enforce(report)
    days = _tabular().check_history(table, cfg, dataset=dataset, version=snapshot.version, start=start, end=end)
    return report.summary() | {"validated_rows": table.num_rows, "window_start": str(start), "window_end": str(end),
                               "window_days_of_readings": round(days, 2)}


def prepare(event: Mapping[str, Any], cfg: config.TabularDataset, work: str) -> dict:
    """Hourly features of the snapshot the event names, split by time, in the work folder."""
    return _tabular().prepare(snapshots.from_uri(event["uri"]), cfg, work)


def train(event: Mapping[str, Any], cfg: config.TabularDataset, work: str) -> dict:
    return _tabular().train(cfg, work)


def evaluate(event: Mapping[str, Any], cfg: config.TabularDataset, work: str) -> dict:
    return _tabular().evaluate(cfg, work)


def _tabular():
    from retrain.training import tabular

    return tabular


def lineage_data(event: Mapping[str, Any]) -> dict:
    return dict(event)


def log_candidate(event: Mapping[str, Any], cfg: config.TabularDataset, work: str, *,
                  coordinates: Mapping[str, Any], quality: Mapping[str, Any], tags: Mapping[str, str] | None = None,
                  description: str | None = None) -> dict:
    """Log the candidate run to MLflow and return the candidate asset event's extra."""
    from retrain.workloads import evaluation_metrics, log_candidate_run

    lineage = tracking.Lineage(**coordinates, data=lineage_data(event), quality=quality)
    metrics = evaluation_metrics(work)
    return log_candidate_run(workload_name=WORKLOAD, dataset=lineage.data["dataset"], model=cfg.model,
                             lineage=lineage, log_body=lambda: _log_body(cfg, lineage, work, metrics),
                             description=description or _description(cfg.model, lineage, metrics), tags=tags)


def _description(model_name: str, lineage: tracking.Lineage, metrics: dict) -> str:
    data = lineage.data
    return (
        f"**{model_name}** candidate trained by Airflow DAG `{lineage.dag_id}` run `{lineage.run_id}` on "
        f"`{data.get('dataset')}` snapshot `{data.get('version')}` ({data.get('rows')} rows, sha256 "
        f"`{str(data.get('sha256', ''))[:12]}…`), quality gate **{lineage.quality.get('verdict', 'unknown')}**.\n\n"
        f"| metric | LightGBM | seasonal naive |\n|---|---|---|\n"
        f"| RMSE (kW) | {metrics['test_rmse']:.4f} | {metrics['baseline_seasonal_naive_rmse']:.4f} |\n"
        f"| MAE (kW) | {metrics['test_mae']:.4f} | {metrics['baseline_seasonal_naive_mae']:.4f} |\n"
    )


def _log_body(cfg: config.TabularDataset, lineage: tracking.Lineage, work: str, metrics: dict) -> dict:
    import lightgbm
    import mlflow
    import numpy
    import pandas
    from mlflow.models import infer_signature

    from retrain.training import tabular

    mlflow.log_params(tracking.flatten(cfg.model_dump()))
    mlflow.log_params(tracking.flatten({"workload": config.load(WORKLOAD).defaults.model_dump()}, "airflow."))
    mlflow.log_metrics(metrics)
    train_summary = json.loads(storage.read_text(storage.join(work, "train.json")))
    mlflow.log_metrics({"best_iteration": train_summary["best_iteration"], "train_seconds": train_summary["seconds"]})
    tracking.log_metric_history(train_summary["history"], prefix="iter_")

    data = lineage.data
    train_frame = storage.read_frame(storage.join(work, "train.parquet"))
    test_frame = storage.read_frame(storage.join(work, "test.parquet"))
    source = str(data.get("uri"))
    digest = str(data.get("sha256", ""))[:20]
    mlflow.log_input(mlflow.data.from_pandas(train_frame.reset_index(), source=source, targets="target",
                                             name=f"{data.get('dataset')}@{data.get('version')}:train", digest=digest),
                     context="training")
    mlflow.log_input(mlflow.data.from_pandas(test_frame.reset_index(), source=source, targets="target",
                                             name=f"{data.get('dataset')}@{data.get('version')}:test", digest=digest),
                     context="evaluation")

    tracking.log_work_files(work, ["prepare.json", "evaluate.json", "feature_importance.png", "residuals.png",
                                   "test_predictions.parquet"], "evaluation")
    tracking.log_work_files(storage.join(work, "quality"), tracking.QUALITY_REPORTS, "quality", optional=True)

    booster = tabular.load_booster(work)
    columns = tabular.feature_columns(test_frame)
    # the held-out examples promotion re-scores candidate and champion on (model inputs + target)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/test_features.parquet"
        test_frame[columns + ["target"]].to_parquet(path, index=False)
        mlflow.log_artifact(path, artifact_path="evaluation")
    example = test_frame[columns].head(5)
    info = mlflow.lightgbm.log_model(
        booster,
        name="model",
        signature=infer_signature(example, booster.predict(example)),
        input_example=example,
        pip_requirements=[f"mlflow=={mlflow.__version__}", f"lightgbm=={lightgbm.__version__}",
                          f"numpy=={numpy.__version__}", f"pandas=={pandas.__version__}"],
    )
    return {"model_uri": info.model_uri, "metrics": metrics}
