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
PRIMARY_METRIC = "test_rmse"
log = logging.getLogger(__name__)

# dataset -> function building the frame its quality suite validates
QUALITY_FRAMES = {"household_power": power.quality_frame}


def dataset_config(dataset: str) -> config.TabularDataset:
    return config.dataset_settings(WORKLOAD, dataset)


def gate(event: Mapping[str, Any], work: str, cfg: config.TabularDataset | None = None) -> dict:
    """Validate the snapshot the event names: what its arrival added plus the training window (raise
    DataQualityError, never retried, when a rule fails or the window is shorter than training needs)."""
    dataset = event.get("dataset", "household_power")
    extra = check_data_event(event, dataset)
    snapshot = snapshots.from_uri(extra["uri"])
    snapshots.verify(snapshot, extra["sha256"])
    cfg = cfg or dataset_config(dataset)
    table, start, end = _tabular().gate_table(snapshot, cfg)
    frame = QUALITY_FRAMES[dataset](table)
    report = quality.validate(dataset, frame, version=snapshot.version, report_dir=storage.join(work, "quality"))
    quality.enforce(report)
    days = _tabular().check_history(table, cfg, dataset=dataset, version=snapshot.version, start=start, end=end)
    return report.summary() | {"validated_rows": table.num_rows, "window_start": str(start), "window_end": str(end),
                               "window_days_of_readings": round(days, 2)}


def prepare(event: Mapping[str, Any], work: str) -> dict:
    dataset = event["dataset"]
    snapshot = snapshots.from_uri(event["uri"])
    return _tabular().prepare(snapshot, dataset_config(dataset), work)


def train(dataset: str, work: str) -> dict:
    return _tabular().train(dataset_config(dataset), work)


def evaluate(dataset: str, work: str) -> dict:
    return _tabular().evaluate(dataset_config(dataset), work)


def _tabular():
    from retrain.training import tabular

    return tabular


def log_candidate(lineage: tracking.Lineage, work: str) -> dict:
    """Log the candidate run to MLflow and return the candidate asset event's extra."""
    dataset = lineage.data["dataset"]
    cfg = dataset_config(dataset)
    model_name = cfg.model
    metrics = json.loads(storage.read_text(storage.join(work, "evaluate.json")))
    description = _description(model_name, lineage, metrics)
    result = tracking.candidate_run(workload=WORKLOAD, dataset=dataset, model_name=model_name, lineage=lineage,
                                    log_body=lambda: _log_body(cfg, lineage, work, metrics), description=description)
    return tracking.publish_candidate(model_name=model_name, dataset=dataset, result=result, lineage=lineage,
                                      primary_metric=PRIMARY_METRIC)


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
