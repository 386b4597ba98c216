"""Tick direction model: bars from a window of partitions, walk-forward LightGBM, baselines beside it.

Each partition (one UTC day of ticks, trades and quotes alike) becomes bars per symbol (``bar_seconds``, one
minute by default): OHLC of the mid price, volume, buy and sell volume (from trades only: a quote-only feed
has none), tick count and mean spread. Features at bar t are log returns, rolling volatility and momentum,
spread, range, activity and order imbalance ((buy - sell volume) / total; 0, or missing over a rolling
window, without volume), all computed from bars up to and including t. The label is the direction of the next bar's
mid-price return (1 = up, 0 = down or flat). Bars, features and labels never cross a partition boundary:
the overnight gap is not a one-minute return, and it keeps train and test days apart.

Walk-forward: the window's last partition is the test day; the model trains on the partitions before it,
with the last ``valid_fraction`` of that time (an embargo of one bar in between) held out for early stopping.
Two baselines are scored on the same test bars: the majority class of the training labels and persistence
(the next bar moves the way this bar did). Per-bar predictions are kept for paired comparisons.

Why LightGBM: the inputs are a few dozen tabular bar features of mixed scale with non-linear interactions
(imbalance means more when spreads are tight and volatility is high), which gradient-boosted trees fit well
without scaling and with missing values (warm-up bars) handled natively. A window holds thousands to a few
hundred thousand bars, too little for a deep sequence model to beat trees, and training takes seconds on the
CPU workers of the ``time_series_training`` workload, so a backfill can retrain one window per partition
without a GPU. Training is deterministic for a given seed, so a re-run of a window reproduces its model.

Pure functions over data: no Airflow, no MLflow and no files here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from retrain.config import TickLightGBM, TickTrainingConfig  # noqa: F401  (defined with the other configs)
from retrain.data import tick_reader, ticks as tick_data
from retrain.errors import DataQualityError

log = logging.getLogger(__name__)

DATASET = "ticks"
BAR_COLUMNS = ["open", "high", "low", "close", "volume", "buy_volume", "sell_volume", "ticks", "spread_bps"]
# identifiers, the label and the baselines' inputs: everything in a prepared frame that is not a model input
NOT_FEATURES = ["symbol", "partition", "bar_start", "label", "next_return", "persistence"]
# a log return below this is flat, not up: two equal mids from different bid/ask pairs differ in the last bits
# of a float (a real move of one tick is 1e-4 of a 100.00 price, or 1e-6 of a pip on 1.1)
FLAT = 1e-9


def window(partitions: list[str], end: str, cfg: TickTrainingConfig) -> list[str]:
    """The K partitions a run ending at ``end`` trains and tests on: the last K available up to ``end``."""
    days = sorted(p for p in set(partitions) if tick_data.partition_day(p) <= tick_data.partition_day(end))
    if not days or days[-1] != end:
        raise ValueError(f"partition {end} is not among the available partitions")
    return days[-cfg.window_partitions:]


# ---------------------------------------------------------------------------------------------------------
# bars and features


def _as_table(item: Any) -> tuple[pa.Table, date | None]:
    """(ticks in the curated schema v2, day) from an Arrow table or a snapshot (anything with ``files`` and
    ``partition``), whichever schema version it was written in."""
    if isinstance(item, pa.Table):
        return tick_data.upgrade(item), None
    day = tick_data.partition_day(item.partition) if getattr(item, "partition", None) else None
    return tick_data.read_partition(item), day


def _day_of(table: pa.Table, session: tuple[str, str] | None = None) -> date:
    """The partition a table of one partition's ticks is (its first tick's UTC day, or session)."""
    return tick_data.partition_of(int(tick_data.nanoseconds(table.slice(0, 1))[0]), session)


def bars(table: pa.Table, bar_seconds: int = 60) -> pd.DataFrame:
    """Bars per symbol from one partition's ticks: mid-price OHLC, volumes, tick count, mean spread (bps).

    Every tick, trade or quote, carries the bid and ask the mid price comes from; only trades add volume (a
    quote's size and side are empty), so a quote-only feed gives bars with zero volume. Minutes without a tick
    inside a symbol's trading span are kept, flat at the last close with zero volume, so the "next bar" is
    always the next interval of time.
    """
    if table.num_rows == 0:
        raise ValueError("a partition must hold at least one tick to make bars")
    symbol = table["symbol"].combine_chunks()
    if not pa.types.is_dictionary(symbol.type):
        symbol = symbol.dictionary_encode()
        table = table.set_column(table.schema.get_field_index("symbol"), "symbol", symbol)
    order = tick_reader.sort_order(table)  # by symbol, then time: each bar is a contiguous run
    names = symbol.dictionary.to_pylist()
    codes = symbol.indices.to_numpy(zero_copy_only=False)[order].astype(np.int64)
    stamps = table["timestamp"].cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy()[order]
    bid = table["bid"].to_numpy()[order]
    ask = table["ask"].to_numpy()[order]
    size = pc.fill_null(table["size"], 0).to_numpy().astype(np.float64)[order]  # quotes trade nothing
    side = table["side"].combine_chunks()
    if not pa.types.is_dictionary(side.type):
        side = side.dictionary_encode()
    is_buy = np.array([v == "B" for v in side.dictionary.to_pylist()] + [False])  # the last: no side (a quote)
    buy = is_buy[pc.fill_null(side.indices, len(side.dictionary)).to_numpy()][order]
    mid = (bid + ask) / 2.0
    spread_bps = (ask - bid) / mid * 1e4

    bar_ns = bar_seconds * 10**9
    bar = stamps // bar_ns
    starts = np.flatnonzero(np.concatenate([[True], (codes[1:] != codes[:-1]) | (bar[1:] != bar[:-1])]))
    ends = np.concatenate([starts[1:], [len(codes)]])
    counts = ends - starts
    grouped = {
        "code": codes[starts],
        "bar": bar[starts],
        "open": mid[starts],
        "high": np.maximum.reduceat(mid, starts),
        "low": np.minimum.reduceat(mid, starts),
        "close": mid[ends - 1],
        "volume": np.add.reduceat(size, starts),
        "buy_volume": np.add.reduceat(np.where(buy, size, 0.0), starts),
        "ticks": counts.astype(np.float64),
        "spread_bps": np.add.reduceat(spread_bps, starts) / counts,
    }
    grouped["sell_volume"] = grouped["volume"] - grouped["buy_volume"]

    # a full grid of bars per symbol, from its first to its last bar of the day
    frames = []
    for code in sorted(np.unique(grouped["code"]), key=lambda c: names[int(c)]):  # symbols in name order
        rows = grouped["code"] == code
        present = grouped["bar"][rows]
        grid = np.arange(present[0], present[-1] + 1)
        at = np.searchsorted(grid, present)
        full = {name: np.full(len(grid), np.nan) for name in BAR_COLUMNS}
        for name in BAR_COLUMNS:
            full[name][at] = grouped[name][rows]
        close = pd.Series(full["close"]).ffill().to_numpy()
        empty = np.isnan(full["close"])
        for name in ("open", "high", "low", "close"):
            full[name][empty] = close[empty]
        for name in ("volume", "buy_volume", "sell_volume", "ticks"):
            full[name][empty] = 0.0
        frame = pd.DataFrame(full)
        frame.insert(0, "bar_start", pd.to_datetime(grid * bar_ns, utc=True))
        frame.insert(0, "symbol", names[int(code)])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def features(bar_frame: pd.DataFrame, cfg: TickTrainingConfig, start: pd.Timestamp | None = None) -> pd.DataFrame:
    """Features, label and baseline inputs per bar of one partition. Features at bar t use bars up to t only.
    ``start``: when the partition begins (its UTC midnight, or its session's cut), which ``minute_of_day``
    counts from (default: each bar's UTC midnight)."""
    out = []
    for symbol, group in bar_frame.groupby("symbol", sort=True, observed=True):
        group = group.sort_values("bar_start")
        close = group["close"]
        ret = np.log(close / close.shift(1))
        ret.iloc[0] = np.log(close.iloc[0] / group["open"].iloc[0])
        f = pd.DataFrame({"symbol": symbol, "bar_start": group["bar_start"]}, index=group.index)
        f["ret_1"] = ret
        for lag in range(1, cfg.return_lags):
            f[f"ret_lag_{lag}"] = ret.shift(lag)
        volume = group["volume"]
        flow = group["buy_volume"] - group["sell_volume"]
        f["imbalance"] = np.where(volume > 0, flow / volume.where(volume > 0, 1.0), 0.0)
        f["spread_bps"] = group["spread_bps"]
        f["range_bps"] = (group["high"] - group["low"]) / close * 1e4
        f["log_ticks"] = np.log1p(group["ticks"])
        f["log_volume"] = np.log1p(volume)
        for w in cfg.rolling_bars:
            f[f"momentum_{w}"] = ret.rolling(w, min_periods=1).sum()
            f[f"volatility_{w}"] = ret.rolling(w, min_periods=2).std()
            volume_w = volume.rolling(w, min_periods=1).sum()
            f[f"imbalance_{w}"] = flow.rolling(w, min_periods=1).sum() / volume_w.where(volume_w > 0)
            f[f"ticks_rel_{w}"] = group["ticks"] / group["ticks"].rolling(w, min_periods=1).mean()
        origin = group["bar_start"].dt.normalize() if start is None else start
        seconds = (group["bar_start"] - origin).dt.total_seconds()
        f["minute_of_day"] = (seconds // 60).astype("int64")
        next_return = np.log(close.shift(-1) / close)
        f["next_return"] = next_return
        f["label"] = (next_return > FLAT).astype("int64")
        f["persistence"] = (ret > FLAT).astype("int64")
        out.append(f.iloc[:-1])  # the last bar of the day has no next bar: no label
    return pd.concat(out, ignore_index=True)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in NOT_FEATURES]


def partition_features(item: Any, cfg: TickTrainingConfig, session: tuple[str, str] | None = None) -> pd.DataFrame:
    """One partition (table or snapshot) -> its feature frame, tagged with the partition's day. ``session``: the
    feed's (cut, zone) when a partition is a session rather than a UTC day (``minute_of_day`` counts from its
    cut)."""
    table, day = _as_table(item)
    day = day or _day_of(table, session)
    bar_frame = bars(table, cfg.bar_seconds)
    if cfg.symbols is not None:  # the configured universe only (None: every symbol the partition holds)
        bar_frame = bar_frame[bar_frame["symbol"].isin(cfg.symbols)]
    start = pd.Timestamp(tick_data.partition_bounds(day, session)[0], tz="UTC")
    frame = features(bar_frame, cfg, start)
    frame.insert(1, "partition", day.isoformat())
    return frame


def prepare(tables: list[Any], cfg: TickTrainingConfig, *, session: tuple[str, str] | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A window of partitions -> (train, valid, test) feature frames, walk-forward.

    ``tables`` are Arrow tables or snapshots, one per partition, in any order; the latest day is the test day.
    One partition's ticks are in memory at a time; only bars are kept. ``session``: the feed's (cut, zone), when
    its partitions are sessions.
    """
    if len(tables) < 2:
        raise ValueError(f"a walk-forward window needs at least 2 partitions (train days + test day), "
                         f"got {len(tables)}")
    frames = [partition_features(item, cfg, session) for item in tables]
    frames.sort(key=lambda f: f["partition"].iloc[0])
    days = [f["partition"].iloc[0] for f in frames]
    if len(set(days)) != len(days):
        raise ValueError(f"partitions of a window must be distinct days, got {days}")
    version = f"{days[0]}..{days[-1]}"
    test = frames[-1].reset_index(drop=True)
    history = pd.concat(frames[:-1], ignore_index=True).sort_values(["bar_start", "symbol"], kind="stable")

    cutoff = history["bar_start"].quantile(1.0 - cfg.valid_fraction)
    cutoff = cutoff.floor(f"{cfg.bar_seconds}s")
    bar = pd.Timedelta(seconds=cfg.bar_seconds)
    valid = history[history["bar_start"] >= cutoff]
    train = history[history["bar_start"] + bar < cutoff]  # embargo: a training label never reads a valid bar
    if len(train) < cfg.min_train_examples or valid.empty:
        raise DataQualityError(DATASET, version, [{
            "expectation": "walk_forward_split", "column": "bar_start",
            "rule": f"at least {cfg.min_train_examples} training bars (min_train_examples) and one validation bar "
                    f"(the last {cfg.valid_fraction:g} of the bars, valid_fraction) in the {len(days) - 1} training "
                    f"days {days[:-1]} of a window of {len(days)} partitions (window_partitions: {cfg.window_partitions})",
            "observed": f"{len(train)} training bars, {len(valid)} validation bars"}])
    log.info("tick window %s: %d train, %d valid, %d test bars", version, len(train), len(valid), len(test))
    return train.reset_index(drop=True), valid.reset_index(drop=True), test


# ---------------------------------------------------------------------------------------------------------
# model


def lightgbm_params(cfg: TickTrainingConfig) -> dict:
    p = cfg.lightgbm
    return {
        "objective": "binary", "num_leaves": p.num_leaves, "learning_rate": p.learning_rate,
        "min_data_in_leaf": p.min_data_in_leaf, "feature_fraction": p.feature_fraction,
        "bagging_fraction": p.bagging_fraction, "bagging_freq": p.bagging_freq, "lambda_l2": p.lambda_l2,
        "num_threads": p.num_threads, "seed": cfg.seed, "deterministic": True, "force_col_wise": True,
        "metric": ["binary_logloss", "auc"], "verbosity": -1,
    }


@dataclass(frozen=True)
class TrainedModel:
    """A fitted booster and what evaluation needs from training (the majority class, the feature order)."""

    booster: Any = field(repr=False)
    features: list[str]
    up_fraction: float
    best_iteration: int
    iterations: int
    seconds: float
    history: dict = field(default_factory=dict, repr=False)

    @property
    def majority_label(self) -> int:
        return int(self.up_fraction > 0.5)

    def summary(self) -> dict:
        return {"best_iteration": self.best_iteration, "iterations": self.iterations,
                "train_up_fraction": self.up_fraction, "majority_label": self.majority_label,
                "features": len(self.features), "seconds": round(self.seconds, 3)}


def train(train_df: pd.DataFrame, valid_df: pd.DataFrame, cfg: TickTrainingConfig) -> TrainedModel:
    """Fit the LightGBM classifier, early-stopping on the validation bars."""
    import lightgbm as lgb

    started = time.perf_counter()
    columns = feature_columns(train_df)
    train_set = lgb.Dataset(train_df[columns], label=train_df["label"], free_raw_data=True)
    valid_set = lgb.Dataset(valid_df[columns], label=valid_df["label"], reference=train_set)
    history: dict = {}
    booster = lgb.train(
        lightgbm_params(cfg),
        train_set,
        num_boost_round=cfg.lightgbm.n_estimators,
        valid_sets=[train_set, valid_set],
        valid_names=["train", "valid"],
        callbacks=[lgb.record_evaluation(history),
                   lgb.early_stopping(cfg.lightgbm.early_stopping_rounds, first_metric_only=True, verbose=False)],
    )
    best = int(booster.best_iteration or booster.current_iteration())
    return TrainedModel(
        booster=booster,
        features=columns,
        up_fraction=float(train_df["label"].mean()),
        best_iteration=best,
        iterations=int(booster.current_iteration()),
        seconds=time.perf_counter() - started,
        history={f"{split}_{metric}": values
                 for split, metrics in history.items() for metric, values in metrics.items()},
    )


def predict(booster, frame: pd.DataFrame, columns: list[str] | None = None,
            num_iteration: int | None = None) -> np.ndarray:
    """Probability that the next bar goes up (also how a champion booster is scored on the same bars)."""
    columns = columns or booster.feature_name()
    return booster.predict(frame[columns], num_iteration=num_iteration)


def _log_loss(labels: np.ndarray, probability: np.ndarray) -> float:
    p = np.clip(probability, 1e-15, 1 - 1e-15)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def classification_metrics(labels: np.ndarray, probability: np.ndarray) -> dict:
    """Accuracy at 0.5, log loss, and ROC AUC when both classes occur (and scikit-learn is there)."""
    metrics = {"accuracy": float(np.mean((probability > 0.5).astype(int) == labels)),
               "log_loss": _log_loss(labels, probability)}
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        return metrics
    if len(np.unique(labels)) == 2:
        metrics["auc"] = float(roc_auc_score(labels, probability))
    return metrics


def evaluate(model: TrainedModel, test_df: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """Score the model and both baselines on the test day's bars: (metrics, per-bar predictions)."""
    if test_df.empty:
        raise ValueError("the test partition has no labelled bars")
    labels = test_df["label"].to_numpy()
    probability = predict(model.booster, test_df, model.features, num_iteration=model.best_iteration)
    scores = classification_metrics(labels, probability)
    majority = np.full(len(labels), model.majority_label)
    persistence = test_df["persistence"].to_numpy()
    baseline_majority = float(np.mean(majority == labels))
    metrics = {
        "test_accuracy": scores["accuracy"],
        "test_log_loss": scores["log_loss"],
        **({"test_auc": scores["auc"]} if "auc" in scores else {}),
        "baseline_majority_accuracy": baseline_majority,
        "baseline_majority_log_loss": _log_loss(labels, np.full(len(labels), model.up_fraction)),
        "baseline_persistence_accuracy": float(np.mean(persistence == labels)),
        "test_accuracy_lift_vs_majority": scores["accuracy"] - baseline_majority,
        "test_up_fraction": float(labels.mean()),
        "test_examples": int(len(labels)),
    }
    predictions = pd.DataFrame({
        "symbol": test_df["symbol"].to_numpy(),
        "bar_start": test_df["bar_start"].array,
        "label": labels,
        "probability": probability,
        "predicted": (probability > 0.5).astype("int64"),
        "majority": majority,
        "persistence": persistence,
    })
    return metrics, predictions
