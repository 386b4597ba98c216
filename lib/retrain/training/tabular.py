"""Household power: hourly features, a time-ordered split, LightGBM training and evaluation.

Pure functions over data; no Airflow and no MLflow here (see :mod:`retrain.tracking`). Each step reads and
writes files in a run's work folder so Airflow tasks can retry one step without redoing the others.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from retrain import snapshots, storage
from retrain.config import TabularDataset
from retrain.errors import DataQualityError

log = logging.getLogger(__name__)

CALENDAR = ["hour", "day_of_week", "month", "is_weekend"]
EXOGENOUS = ["global_reactive_power", "voltage", "sub_metering_1", "sub_metering_2", "sub_metering_3"]


def hourly(table: pa.Table, target: str, max_missing: float) -> pd.DataFrame:
    """Hourly means of every reading; hours with too many missing minutes get a missing target."""
    frame = table.to_pandas().set_index("timestamp")
    grouped = frame.resample("1h")
    means = grouped.mean()
    missing = frame[target].isna().resample("1h").mean()
    means.loc[missing > max_missing, target] = np.nan
    means["missing_fraction"] = missing
    return means


def build_features(hours: pd.DataFrame, cfg: TabularDataset) -> pd.DataFrame:
    """Lag, rolling and calendar features. Every feature at hour t uses readings up to t-1 only."""
    target = cfg.features.target
    y = hours[target]
    features = pd.DataFrame(index=hours.index)
    for lag in cfg.features.lags_hours:
        features[f"lag_{lag}h"] = y.shift(lag)
    for window in cfg.features.rolling_hours:
        features[f"rolling_mean_{window}h"] = y.shift(1).rolling(window, min_periods=1).mean()
    for column in EXOGENOUS:
        features[f"{column}_lag_1h"] = hours[column].shift(1)
    index = hours.index
    # int64, so the logged signature accepts what callers naturally send (pandas gives int32 here)
    features["hour"] = index.hour.astype("int64")
    features["day_of_week"] = index.dayofweek.astype("int64")
    features["month"] = index.month.astype("int64")
    features["is_weekend"] = (index.dayofweek >= 5).astype("int64")
    features["seasonal_naive"] = y.shift(cfg.seasonal_naive_lag_hours)  # the baseline, not a model input
    features["target"] = y
    return features


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    def describe(self) -> dict:
        return {
            name: {"rows": len(part), "start": str(part.index.min()), "end": str(part.index.max())}
            for name, part in (("train", self.train), ("valid", self.valid), ("test", self.test))
        }


# --- the training window: read only what it needs ----------------------------------------------------------

def _stamp(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def window(snapshot: snapshots.Snapshot, cfg: TabularDataset) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end]`` of the training window: the last ``window_days`` of the series (all of it when null)."""
    first, last = (_stamp(t) for t in snapshot.manifest["time_range"])
    if cfg.window_days is None:
        return first, last
    return max(first, last - pd.Timedelta(days=cfg.window_days) + pd.Timedelta(minutes=1)), last


def read_range(snapshot: snapshots.Snapshot, start: pd.Timestamp, end: pd.Timestamp,
               columns: list[str] | None = None) -> pa.Table:
    """The snapshot's readings in ``[start, end]``: only the shards (months) that overlap it are opened, only
    ``columns`` are read, and row groups outside it are skipped by their statistics."""
    from retrain.data import power

    entries = snapshot.manifest["files"]
    if snapshot.sharded:
        entries = [e for e in entries if _stamp(e["time_range"][0]) <= end and _stamp(e["time_range"][1]) >= start]
    bounds = [("timestamp", ">=", start.to_pydatetime()), ("timestamp", "<=", end.to_pydatetime())]
    schema = power.SCHEMA if columns is None else pa.schema([power.SCHEMA.field(c) for c in columns])
    tables = []
    for entry in entries:
        shard = snapshots.local_file(snapshot.file(entry["path"]), entry["sha256"])  # remote: once, via the cache
        tables.append(storage.read_parquet(shard, columns=columns, filters=bounds).cast(schema))
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables).sort_by("timestamp") if len(tables) > 1 else tables[0]


def gate_table(snapshot: snapshots.Snapshot, cfg: TabularDataset) -> tuple[pa.Table, pd.Timestamp, pd.Timestamp]:
    """What the quality gate validates: the readings the snapshot's arrival added or corrected (wherever
    they lie) plus the training window, each reading once; and the window's bounds."""
    start, end = window(snapshot, cfg)
    arrival = snapshot.manifest.get("arrival") or {}
    ranges = [(start, end)]
    if arrival.get("time_range"):
        first, last = (_stamp(t) for t in arrival["time_range"])
        if last < start:  # a correction of older readings: validate it too
            ranges.insert(0, (first, min(last, start - pd.Timedelta(minutes=1))))
        elif first < start:
            ranges = [(first, end)]
    parts = [read_range(snapshot, a, b) for a, b in ranges]
    return (pa.concat_tables(parts) if len(parts) > 1 else parts[0]), start, end


def training_columns(cfg: TabularDataset) -> list[str]:
    return list(dict.fromkeys(["timestamp", cfg.features.target, *EXOGENOUS]))


def history_days(table: pa.Table, target: str) -> float:
    """Days of the series with readings: hours holding at least one reading of ``target``, over 24."""
    import pyarrow.compute as pc

    present = table.filter(pc.is_valid(table[target]))["timestamp"]
    hours = pc.count_distinct(pc.floor_temporal(present, unit="hour")).as_py() if len(present) else 0
    return hours / 24


def check_history(table: pa.Table, cfg: TabularDataset, *, dataset: str, version: str,
                  start: pd.Timestamp, end: pd.Timestamp) -> float:
    """The window ``[start, end]`` of ``table`` must hold the days training needs; DataQualityError naming the
    minimum otherwise."""
    import pyarrow.compute as pc

    stamps = table["timestamp"]
    inside = pc.and_(pc.greater_equal(stamps, pa.scalar(start.to_pydatetime(), stamps.type)),
                     pc.less_equal(stamps, pa.scalar(end.to_pydatetime(), stamps.type)))
    days = history_days(table.filter(inside), cfg.features.target)
    if days < cfg.min_history_days:
        raise DataQualityError(dataset, version, [{
            "expectation": "training_window", "column": "timestamp",
            "rule": f"the training window must hold at least {cfg.min_history_days:g} days of readings "
                    f"(warm-up {cfg.warmup_hours} h + {cfg.split.min_train_days} training + {cfg.split.valid_days} "
                    f"validation + {cfg.split.test_days} test days; window_days={cfg.window_days})",
            "observed": f"{days:.1f} days of readings from {start} to {end}"}])
    return days


def time_split(features: pd.DataFrame, cfg: TabularDataset, *, dataset: str, version: str) -> Split:
    """Train, then validation, then test, in time order; warm-up hours without full lags are dropped."""
    warmup = cfg.warmup_hours
    usable = features.iloc[warmup:].dropna(subset=["target"])
    if usable.empty:
        raise DataQualityError(dataset, version, [{"expectation": "time_split", "column": "timestamp",
                                                    "rule": f"at least {warmup} hours of history before the first example",
                                                    "observed": f"{len(features)} hours"}])
    end = usable.index.max()
    test_start = end - pd.Timedelta(days=cfg.split.test_days) + pd.Timedelta(hours=1)
    valid_start = test_start - pd.Timedelta(days=cfg.split.valid_days)
    train = usable[usable.index < valid_start]
    valid = usable[(usable.index >= valid_start) & (usable.index < test_start)]
    test = usable[usable.index >= test_start]
    train_days = len(train) / 24
    if train_days < cfg.split.min_train_days:
        raise DataQualityError(dataset, version, [{
            "expectation": "time_split", "column": "timestamp",
            "rule": f"at least {cfg.split.min_train_days} days of training data after {warmup} h warm-up, "
                    f"{cfg.split.valid_days} validation and {cfg.split.test_days} test days",
            "observed": f"{train_days:.1f} training days"}])
    return Split(train, valid, test)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("target", "seasonal_naive")]


def prepare(snapshot: snapshots.Snapshot, cfg: TabularDataset, work: str) -> dict:
    """Snapshot -> train/valid/test feature files in ``work``. Returns a summary for the next steps."""
    started = time.perf_counter()
    start, end = window(snapshot, cfg)
    table = read_range(snapshot, start, end, training_columns(cfg))
    rows = table.num_rows
    hours = hourly(table, cfg.features.target, cfg.features.max_missing_fraction_per_hour)
    del table
    features = build_features(hours, cfg)
    split = time_split(features, cfg, dataset=snapshot.dataset, version=snapshot.version)
    for name, part in (("train", split.train), ("valid", split.valid), ("test", split.test)):
        storage.write_frame(part, storage.join(work, f"{name}.parquet"))
    summary = {"window": {"days": cfg.window_days, "start": str(start), "end": str(end), "readings": rows},
               "split": split.describe(), "features": feature_columns(split.train),
               "hours": len(hours), "seconds": round(time.perf_counter() - started, 3)}
    storage.write_text(storage.join(work, "prepare.json"), json.dumps(summary, indent=2))
    return summary




def lightgbm_params(cfg: TabularDataset) -> dict:
    p = cfg.lightgbm
    return {
        "objective": p.objective, "num_leaves": p.num_leaves, "learning_rate": p.learning_rate,
        "min_data_in_leaf": p.min_data_in_leaf, "feature_fraction": p.feature_fraction,
        "bagging_fraction": p.bagging_fraction, "bagging_freq": p.bagging_freq, "lambda_l2": p.lambda_l2,
        "num_threads": p.num_threads, "seed": p.seed, "deterministic": True, "force_col_wise": True,
        "metric": ["l2", "l1"], "verbosity": -1,
    }


def train(cfg: TabularDataset, work: str) -> dict:
    """Train LightGBM with early stopping on the validation window; writes ``model.txt`` and the history."""
    import lightgbm as lgb

    started = time.perf_counter()
    train_frame = storage.read_frame(storage.join(work, "train.parquet"))
    valid_frame = storage.read_frame(storage.join(work, "valid.parquet"))
    columns = feature_columns(train_frame)
    train_set = lgb.Dataset(train_frame[columns], label=train_frame["target"], free_raw_data=True)
    valid_set = lgb.Dataset(valid_frame[columns], label=valid_frame["target"], reference=train_set)
    history: dict = {}
    booster = lgb.train(
        lightgbm_params(cfg),
        train_set,
        num_boost_round=cfg.lightgbm.n_estimators,
        valid_sets=[train_set, valid_set],
        valid_names=["train", "valid"],
        callbacks=[lgb.record_evaluation(history), lgb.early_stopping(cfg.lightgbm.early_stopping_rounds, verbose=False)],
    )
    storage.write_text(storage.join(work, "model.txt"), booster.model_to_string(num_iteration=booster.best_iteration))
    summary = {
        "best_iteration": int(booster.best_iteration or booster.current_iteration()),
        "iterations": len(history["valid"]["l2"]),  # rounds run; the booster is cut at the best one
        "history": {f"{split}_{metric}": values for split, metrics in history.items() for metric, values in metrics.items()},
        "seconds": round(time.perf_counter() - started, 3),
    }
    storage.write_text(storage.join(work, "train.json"), json.dumps(summary))
    return {k: v for k, v in summary.items() if k != "history"}


def load_booster(work: str):
    import lightgbm as lgb

    return lgb.Booster(model_str=storage.read_text(storage.join(work, "model.txt")))


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict:
    error = predicted - actual
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def evaluate(cfg: TabularDataset, work: str) -> dict:
    """Score the model and the seasonal-naive baseline on the same test hours; write predictions and plots."""
    booster = load_booster(work)
    test = storage.read_frame(storage.join(work, "test.parquet"))
    columns = feature_columns(test)
    predicted = booster.predict(test[columns])
    actual = test["target"].to_numpy()
    model_metrics = regression_metrics(actual, predicted)
    baseline_rows = test["seasonal_naive"].notna().to_numpy()
    baseline = regression_metrics(actual[baseline_rows], test["seasonal_naive"].to_numpy()[baseline_rows])
    metrics = {
        "test_rmse": model_metrics["rmse"],
        "test_mae": model_metrics["mae"],
        "baseline_seasonal_naive_rmse": baseline["rmse"],
        "baseline_seasonal_naive_mae": baseline["mae"],
        "test_rmse_skill_vs_baseline": 1.0 - model_metrics["rmse"] / baseline["rmse"] if baseline["rmse"] else 0.0,
        "test_examples": len(test),
    }
    predictions = pd.DataFrame({"timestamp": test.index, "actual": actual, "predicted": predicted,
                                "seasonal_naive": test["seasonal_naive"].to_numpy()})
    storage.write_frame(predictions, storage.join(work, "test_predictions.parquet"))
    storage.write_text(storage.join(work, "evaluate.json"), json.dumps(metrics, indent=2))
    _plots(booster, columns, predictions, work)
    return metrics


def _plots(booster, columns: list[str], predictions: pd.DataFrame, work: str) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    importance = pd.Series(booster.feature_importance("gain"), index=columns).sort_values()
    fig, ax = plt.subplots(figsize=(7, 5))
    importance.plot.barh(ax=ax)
    ax.set_title("Feature importance (gain)")
    ax.set_xlabel("total gain")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    storage.write_bytes(storage.join(work, "feature_importance.png"), buffer.getvalue())

    residual = predictions["predicted"] - predictions["actual"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6))
    top.plot(predictions["timestamp"], predictions["actual"], label="actual", linewidth=1)
    top.plot(predictions["timestamp"], predictions["predicted"], label="LightGBM", linewidth=1)
    top.plot(predictions["timestamp"], predictions["seasonal_naive"], label="seasonal naive", linewidth=0.8, alpha=0.6)
    top.set_ylabel("kW (hourly mean)")
    top.legend(loc="upper right")
    top.set_title("Test window")
    bottom.plot(predictions["timestamp"], residual, linewidth=0.8)
    bottom.axhline(0, color="black", linewidth=0.5)
    bottom.set_ylabel("residual (kW)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    storage.write_bytes(storage.join(work, "residuals.png"), buffer.getvalue())
