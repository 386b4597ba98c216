"""A fifth model, for the catalog proof only (``test_fifth_model.py``): LightGBM regression on generated readings.

Everything the platform needs to know about it is in :data:`ENTRIES` (its catalog entries) and in this module
(the :class:`retrain.workloads.Workload` steps, its ingest step, its typed config, its naive baseline, its
quality suite and promotion policy). No other module names it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field

from retrain import catalog, config, quality, snapshots, storage, tracking, workloads

WORKLOAD, DATASET, MODEL = "toy_regression_training", "toy_readings", "toy_readings_lgbm"
FEATURES = ["x1", "x2", "x3"]

ENTRIES = (
    catalog.WorkloadEntry(WORKLOAD, __name__, kind="toy", config_model=f"{__name__}:ToyConfig"),
    catalog.DatasetEntry(DATASET, WORKLOAD, ingest=f"{__name__}:ingest"),
    catalog.ModelEntry(MODEL, DATASET, "test_rmse", evaluation_set="retrain.workloads.promote:target_frame_eval_set",
                       held_out="the last test_fraction of the readings", baseline=f"{__name__}:mean_baseline"),
)

CONFIG = {  # configs/toy_regression_training.yaml
    "workload": WORKLOAD, "description": "the catalog proof's toy regression",
    "defaults": {"owner": "tests", "retries": 0, "retry_delay_seconds": 1, "execution_timeout_minutes": 5,
                 "pool": "default_pool", "queue": "default"},
    "datasets": {DATASET: {"model": MODEL, "test_fraction": 0.25, "num_boost_round": 60}},
}
POLICY = {"primary_metric": "test_rmse", "direction": "minimize", "min_improvement": 0,
          "baseline_metric": "baseline_mean_rmse", "min_eval_examples": 30}
SUITE = {"name": DATASET, "expectations": [
    {"type": "expect_table_columns_to_match_ordered_list", "kwargs": {"column_list": [*FEATURES, "y"]},
     "meta": {"rule": "the curated schema"}},
    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 200},
     "meta": {"rule": "at least 200 readings"}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "y"}, "meta": {"rule": "every reading has y"}},
]}


class ToyDataset(config.Strict):
    model: str
    test_fraction: float = Field(0.25, gt=0, lt=1)
    num_boost_round: int = Field(60, ge=1)
    seed: int = 0

    def evaluation_capacity(self) -> None:
        return None


class ToyConfig(config.WorkloadConfig):
    datasets: dict[str, ToyDataset]


def generate(rows: int, seed: int) -> bytes:
    """A CSV of readings: y = 2 x1 - x2 + x3² + noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    y = 2 * x[:, 0] - x[:, 1] + x[:, 2] ** 2 + rng.normal(scale=0.3, size=rows)
    lines = ["x1,x2,x3,y"] + [f"{a:.6f},{b:.6f},{c:.6f},{d:.6f}" for (a, b, c), d in zip(x, y)]
    return ("\n".join(lines) + "\n").encode()


def ingest(dataset: str, name: str, run_id: str):
    """Claim one landed CSV, commit it as a snapshot (its content's digest is the version), archive it."""
    import pyarrow.csv

    from retrain.ingest import landing
    from retrain.ingest.power import IngestResult

    claimed = landing.claim(dataset, name, run_id)
    data = storage.read_bytes(claimed)
    digest = hashlib.sha256(data).hexdigest()
    with landing.quarantined_on_format_error(dataset, claimed, run_id):
        table = pyarrow.csv.read_csv(io.BytesIO(data))
    snapshot = snapshots.load(dataset, digest[:16])
    status = "duplicate" if snapshot is not None else "ingested"
    if snapshot is None:
        snapshot = snapshots.commit(dataset, digest[:16], lambda folder: [snapshots.write_parquet(table, folder)],
                                    rows=table.num_rows, source_files=[{"name": name, "sha256": digest}],
                                    produced_by={"run_id": run_id, "file": name})
    landing.archive(dataset, claimed, snapshot.version)
    return IngestResult(status, snapshot)


# --- the Workload steps ---------------------------------------------------------------------------------------

def dataset_config(dataset: str, overrides: Mapping[str, Any] | None = None) -> ToyDataset:
    base = config.dataset_settings(WORKLOAD, dataset)
    return type(base).model_validate(base.model_dump() | dict(overrides or {}))


def resolve(dataset: str, events, cfg: ToyDataset, *, key: str | None = None, scheduled: bool = True) -> dict:
    return workloads.resolve_snapshot(dataset, events, key=key)


def _frame(event: Mapping[str, Any]):
    snapshot = snapshots.from_uri(event["uri"])
    snapshots.verify(snapshot, event["sha256"])
    return snapshots.read_parquet(snapshot).to_pandas()


def gate(event: Mapping[str, Any], cfg: ToyDataset, work: str) -> dict:
    report = quality.validate(event["dataset"], _frame(event), version=event["version"],
                              report_dir=storage.join(work, "quality"))
    quality.enforce(report)
    return report.summary()


def prepare(event: Mapping[str, Any], cfg: ToyDataset, work: str) -> dict:
    frame = _frame(event)
    cut = int(len(frame) * (1 - cfg.test_fraction))
    storage.write_frame(frame.iloc[:cut], storage.join(work, "train.parquet"), index=False)
    storage.write_frame(frame.iloc[cut:], storage.join(work, "test.parquet"), index=False)
    return {"train": cut, "test": len(frame) - cut}


def train(event: Mapping[str, Any], cfg: ToyDataset, work: str) -> dict:
    import lightgbm as lgb

    frame = storage.read_frame(storage.join(work, "train.parquet"))
    booster = lgb.train({"objective": "regression", "verbosity": -1, "seed": cfg.seed, "num_leaves": 8},
                        lgb.Dataset(frame[FEATURES], frame["y"]), num_boost_round=cfg.num_boost_round)
    storage.write_text(storage.join(work, "model.txt"), booster.model_to_string())
    summary = {"rounds": cfg.num_boost_round, "train_mean": float(frame["y"].mean())}
    storage.write_text(storage.join(work, "train.json"), json.dumps(summary))
    return summary


def _booster(work: str):
    import lightgbm as lgb

    return lgb.Booster(model_str=storage.read_text(storage.join(work, "model.txt")))


def evaluate(event: Mapping[str, Any], cfg: ToyDataset, work: str) -> dict:
    test = storage.read_frame(storage.join(work, "test.parquet"))
    mean = json.loads(storage.read_text(storage.join(work, "train.json")))["train_mean"]
    predicted = _booster(work).predict(test[FEATURES])
    metrics = {"test_rmse": math.sqrt(float(np.mean((predicted - test["y"]) ** 2))),
               "baseline_mean_rmse": math.sqrt(float(np.mean((mean - test["y"]) ** 2))),
               "test_examples": len(test)}
    storage.write_frame(test.rename(columns={"y": "target"}), storage.join(work, "test_features.parquet"), index=False)
    storage.write_frame(test.assign(baseline=mean)[["baseline"]], storage.join(work, "test_predictions.parquet"),
                        index=False)
    storage.write_text(storage.join(work, "evaluate.json"), json.dumps(metrics))
    return metrics


def lineage_data(event: Mapping[str, Any]) -> dict:
    return dict(event)


def log_candidate(event: Mapping[str, Any], cfg: ToyDataset, work: str, *, coordinates: Mapping[str, Any],
                  quality: Mapping[str, Any], tags: Mapping[str, str] | None = None,
                  description: str | None = None) -> dict:
    lineage = tracking.Lineage(**coordinates, data=lineage_data(event), quality=quality)
    metrics = workloads.evaluation_metrics(work)
    return workloads.log_candidate_run(
        workload_name=WORKLOAD, dataset=event["dataset"], model=cfg.model, lineage=lineage,
        log_body=lambda: _log_body(cfg, work, metrics), tags=tags,
        description=description or f"toy candidate: test RMSE {metrics['test_rmse']:.3f}")


def _log_body(cfg: ToyDataset, work: str, metrics: dict) -> dict:
    import mlflow

    mlflow.log_params(tracking.flatten(cfg.model_dump()))
    mlflow.log_metrics(metrics)
    tracking.log_work_files(work, ["test_features.parquet", "test_predictions.parquet", "evaluate.json"], "evaluation")
    booster = _booster(work)
    info = mlflow.lightgbm.log_model(booster, name="model")
    return {"model_uri": info.model_uri, "metrics": metrics}


def mean_baseline(run, n: int) -> np.ndarray | None:
    """The training mean on every held-out reading (as evaluate scored it)."""
    import mlflow
    import pandas as pd

    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                artifact_path="evaluation/test_predictions.parquet",
                                                tracking_uri=tracking.client().tracking_uri)
    frame = pd.read_parquet(local)
    return frame["baseline"].to_numpy(dtype=float) if len(frame) == n else None
