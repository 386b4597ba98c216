"""The time-series workload's steps (ticks): window -> gate -> features -> train -> evaluate -> log_candidate.

Backfill policy, enforced in :func:`resolve_window`: a run trains only if its partition is the newest
committed one. A backfill that rebuilds N older partitions therefore creates N cheap, skipped runs and no
training (runs are serialised by ``max_active_runs=1``), and the promotion step never promotes a candidate
whose window ends before the current champion's (see :mod:`retrain.workloads.promote`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from retrain import config, quality, snapshots, storage, tracking

WORKLOAD = "time_series_training"
DATASET = "ticks"
PRIMARY_METRIC = "test_accuracy"
log = logging.getLogger(__name__)


def dataset_config() -> config.TickTrainingConfig:
    return config.dataset_settings(WORKLOAD, DATASET)


def resolve_window(partition: str) -> dict:
    """The K partitions up to ``partition`` this run trains on, or why it must not train."""
    from retrain.ingest import ticks as ingest_ticks

    cfg = dataset_config()
    committed = ingest_ticks.partitions()
    if partition not in committed:
        return {"partition": partition, "train": False, "reason": f"partition {partition} has no committed snapshot"}
    newer = [p for p in committed if p > partition]
    if newer:
        return {"partition": partition, "train": False,
                "reason": f"superseded: partition {newer[-1]} is newer; only the newest window trains (backfill policy)"}
    window = [p for p in committed if p <= partition][-cfg.window_partitions:]
    if len(window) < cfg.window_partitions:
        return {"partition": partition, "train": False,
                "reason": f"window needs {cfg.window_partitions} partitions up to {partition}, {len(window)} committed"}
    events = [snapshots.load(DATASET, "", p).event_extra() for p in window]
    return {"partition": partition, "train": True, "window": window, "events": events}


def gate(window: Mapping[str, Any], work: str) -> dict:
    """Validate every partition of the window; one report per partition; all failures raised together."""
    from retrain.data import ticks
    from retrain.errors import DataQualityError

    failures, summaries = [], []
    for event in window["events"]:
        snapshot = snapshots.from_uri(event["uri"])
        snapshots.verify(snapshot, event["sha256"])
        frame = ticks.quality_frame(snapshots.read_parquet(snapshot), snapshot.partition)
        report = quality.validate(DATASET, frame, version=snapshot.partition,
                                  report_dir=storage.join(work, "quality", snapshot.partition))
        summaries.append(report.summary())
        failures += [f | {"partition": snapshot.partition} for f in report.failures]
    if failures:
        raise DataQualityError(DATASET, f"{window['window'][0]}..{window['window'][-1]}", failures,
                               storage.join(work, "quality"))
    return {"verdict": "passed", "partitions": summaries}


def features(window: Mapping[str, Any], work: str, cfg: config.TickTrainingConfig | None = None) -> dict:
    """Bars and features of the window, split train/valid/test, written to the work folder (``cfg``: the
    workload's configuration unless an ad-hoc run overrides it)."""
    from retrain.training import ticks

    snaps = [snapshots.from_uri(e["uri"]) for e in window["events"]]
    train, valid, test = ticks.prepare(snaps, cfg or dataset_config())
    for name, frame in (("train", train), ("valid", valid), ("test", test)):
        _write(frame, storage.join(work, f"{name}.parquet"))
    return {"train": len(train), "valid": len(valid), "test": len(test)}


def train(work: str, cfg: config.TickTrainingConfig | None = None) -> dict:
    """LightGBM on the work folder's train/valid features; the booster and its summary go back there."""
    from retrain.training import ticks

    model = ticks.train(_read(storage.join(work, "train.parquet")), _read(storage.join(work, "valid.parquet")),
                        cfg or dataset_config())
    storage.write_text(storage.join(work, "model.txt"), model.booster.model_to_string())
    summary = model.summary() | {"feature_names": model.features, "up_fraction": model.up_fraction,
                                 "history": model.history}
    storage.write_text(storage.join(work, "train.json"), json.dumps(summary, default=float))
    return model.summary()


def _model(work: str):
    import lightgbm as lgb

    from retrain.training import ticks

    s = json.loads(storage.read_text(storage.join(work, "train.json")))
    return ticks.TrainedModel(booster=lgb.Booster(model_str=storage.read_text(storage.join(work, "model.txt"))),
                              features=s["feature_names"], up_fraction=s["up_fraction"],
                              best_iteration=s["best_iteration"], iterations=s["iterations"], seconds=s["seconds"])


def evaluate(work: str) -> dict:
    from retrain.training import ticks

    model = _model(work)
    test = _read(storage.join(work, "test.parquet"))
    metrics, predictions = ticks.evaluate(model, test)
    _write(predictions, storage.join(work, "test_predictions.parquet"))
    _write(test[model.features + ["label"]], storage.join(work, "test_features.parquet"))
    storage.write_text(storage.join(work, "evaluate.json"), json.dumps(metrics, indent=2))
    return metrics


def log_candidate(lineage: tracking.Lineage, work: str) -> dict:
    cfg = dataset_config()
    metrics = json.loads(storage.read_text(storage.join(work, "evaluate.json")))
    data = lineage.data
    description = (
        f"**{cfg.model}** candidate on the window {', '.join(data['partitions'])} (test day {data['partition']}), "
        f"trained by `{lineage.dag_id}` run `{lineage.run_id}`; quality gate **{lineage.quality.get('verdict')}**.\n\n"
        f"| | accuracy |\n|---|---|\n| LightGBM | {metrics['test_accuracy']:.4f} |\n"
        f"| majority class | {metrics['baseline_majority_accuracy']:.4f} |\n"
        f"| persistence | {metrics['baseline_persistence_accuracy']:.4f} |\n")
    result = tracking.candidate_run(workload=WORKLOAD, dataset=DATASET, model_name=cfg.model, lineage=lineage,
                                    log_body=lambda: _log_body(cfg, lineage, work, metrics), description=description)
    return tracking.publish_candidate(model_name=cfg.model, dataset=DATASET, result=result, lineage=lineage,
                                      primary_metric=PRIMARY_METRIC,
                                      data_extra={"partitions": data["partitions"], "window_end": data["partition"]})


def _log_body(cfg: config.TickTrainingConfig, lineage: tracking.Lineage, work: str, metrics: dict) -> dict:
    import lightgbm
    import mlflow
    import numpy
    import pandas
    from mlflow.models import infer_signature

    mlflow.log_params(tracking.flatten(cfg.model_dump()))
    mlflow.log_metrics(metrics)
    mlflow.set_tag("data.window_end", lineage.data["partition"])
    summary = json.loads(storage.read_text(storage.join(work, "train.json")))
    history = {}
    for key, values in summary.get("history", {}).items():  # {"valid_binary_logloss": [...]} or nested by split
        if isinstance(values, dict):
            history |= {f"{key}_{metric}": series for metric, series in values.items()}
        else:
            history[key] = values
    tracking.log_metric_history(history, prefix="iter_")
    tracking.log_work_files(work, ["evaluate.json", "test_predictions.parquet", "test_features.parquet", "train.json"],
                            "evaluation")
    quality_dir = storage.join(work, "quality")
    for partition in storage.listdir(quality_dir):
        tracking.log_work_files(storage.join(quality_dir, partition), tracking.QUALITY_REPORTS, f"quality/{partition}",
                                optional=True)
    model = _model(work)
    test = _read(storage.join(work, "test_features.parquet"))
    example = test[model.features].head(5)
    info = mlflow.lightgbm.log_model(
        model.booster, name="model", signature=infer_signature(example, model.booster.predict(example)),
        input_example=example,
        pip_requirements=[f"mlflow=={mlflow.__version__}", f"lightgbm=={lightgbm.__version__}",
                          f"numpy=={numpy.__version__}", f"pandas=={pandas.__version__}"],
    )
    return {"model_uri": info.model_uri, "metrics": metrics}


def _write(frame, location: str) -> None:
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    storage.write_bytes(location, buffer.getvalue())


def _read(location: str):
    import pandas as pd

    with storage.open_read(location) as handle:
        return pd.read_parquet(handle)
