"""Tick direction model: bars, leakage-free features, walk-forward split, LightGBM against its baselines."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from retrain import config
from retrain.data import tick_generator, tick_reader, ticks
from retrain.errors import DataQualityError
from retrain.training import ticks as training

DAYS = [date(2024, 1, 2) + timedelta(days=i) for i in range(3)]
TICKS = 80_000  # per partition: 4 symbols x ~20k ticks


@pytest.fixture(scope="module")
def cfg() -> training.TickTrainingConfig:
    return training.TickTrainingConfig(window_partitions=3, symbols=list(ticks.DEFAULT_SYMBOLS),
                                       lightgbm=training.TickLightGBM(num_threads=1))


@pytest.fixture(scope="module")
def tables() -> list[pa.Table]:
    return [tick_generator.generate_ticks(day, ticks.DEFAULT_SYMBOLS, TICKS, seed=7) for day in DAYS]


@pytest.fixture(scope="module")
def prepared(tables, cfg):
    return training.prepare(tables, cfg)


@pytest.fixture(scope="module")
def evaluated(prepared, cfg):
    train, valid, test = prepared
    model = training.train(train, valid, cfg)
    metrics, predictions = training.evaluate(model, test)
    return model, metrics, predictions


def _mid_closes(table: pa.Table) -> pd.Series:
    """Independent reference: the last tick's mid price per (symbol, minute), straight from the ticks."""
    frame = table.to_pandas()
    frame["symbol"] = frame["symbol"].astype(str)
    frame["mid"] = (frame["bid"] + frame["ask"]) / 2
    frame["bar_start"] = frame["timestamp"].dt.floor("1min")
    return frame.sort_values("timestamp").groupby(["symbol", "bar_start"])["mid"].last()


# --------------------------------------------------------------------------------------------------------


def test_config_is_strict_and_frozen():
    with pytest.raises(ValidationError, match="extra"):
        training.TickTrainingConfig(window_partition=3)
    with pytest.raises(ValidationError, match="divide a day"):
        training.TickTrainingConfig(bar_seconds=7)
    with pytest.raises(ValidationError):
        training.TickTrainingConfig(window_partitions=1)
    cfg = training.TickTrainingConfig()
    with pytest.raises(ValidationError):
        cfg.seed = 1
    assert cfg.symbols is None and cfg.model == "ticks_direction_lgbm"  # the feed's, once the workload loads
    assert config.load("time_series_training").datasets["ticks"].symbols == ["AAPL", "MSFT", "GOOG", "AMZN"]


def test_bars_are_ohlc_of_the_mid_with_volumes(tables):
    table = tables[0]
    bars = training.bars(table)
    closes = _mid_closes(table)
    traded = bars[bars["ticks"] > 0].set_index(["symbol", "bar_start"])
    np.testing.assert_allclose(traded["close"], closes.loc[traded.index])
    assert bars["ticks"].sum() == table.num_rows and bars["volume"].sum() == pc.sum(table["size"]).as_py()
    assert np.allclose(bars["buy_volume"] + bars["sell_volume"], bars["volume"])
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    # a full one-minute grid per symbol: consecutive bars are one minute apart
    steps = bars.groupby("symbol")["bar_start"].diff().dropna()
    assert (steps == pd.Timedelta(minutes=1)).all()


def test_label_is_the_direction_of_the_next_bar(prepared, tables):
    test = prepared[2]
    closes = _mid_closes(tables[-1])
    bars = training.bars(tables[-1]).set_index(["symbol", "bar_start"])["close"]
    key = list(zip(test["symbol"], test["bar_start"]))
    following = list(zip(test["symbol"], test["bar_start"] + pd.Timedelta(minutes=1)))
    now, later = bars.loc[key].to_numpy(), bars.loc[following].to_numpy()
    np.testing.assert_array_equal(test["label"].to_numpy(), (later > now).astype(int))
    np.testing.assert_allclose(test["next_return"], np.log(later / now))
    # closes come from the ticks themselves wherever the bar traded
    traded = [k for k in key if k in closes.index]
    np.testing.assert_allclose(bars.loc[traded], closes.loc[traded])
    np.testing.assert_array_equal(test["persistence"], (test["ret_1"] > 0).astype(int))


def test_features_do_not_use_the_future(tables, cfg):
    """Features at bar t are unchanged when every tick after t is replaced by something else."""
    day = tables[-1]
    full = training.partition_features(day, cfg)
    cutoff = pd.Timestamp(f"{DAYS[-1]} 16:00", tz="UTC")
    after = pc.greater_equal(day["timestamp"], pa.scalar(cutoff.to_pydatetime(), day["timestamp"].type)).to_numpy(
        zero_copy_only=False)
    future = day
    for column in ("price", "bid", "ask"):  # a 5% jump and twice the size from the cut on
        values = day[column].to_numpy().copy()
        values[after] *= 1.05
        future = future.set_column(future.schema.get_field_index(column), column, pa.array(values))
    size = day["size"].to_numpy().copy()
    size[after] *= 2
    future = future.set_column(3, "size", pa.array(size))
    changed = training.partition_features(future, cfg)

    columns = training.feature_columns(full)
    assert "imbalance" in columns and "volatility_15" in columns and "momentum_5" in columns
    assert not set(columns) & {"label", "next_return", "persistence"}
    before = full["bar_start"] < cutoff
    assert before.sum() > 500 and (~before).sum() > 500
    pd.testing.assert_frame_equal(full.loc[before, columns], changed.loc[before, columns])
    # the label at t is the only thing that reads bar t+1: it changes only for the last bar before the cut
    moved = full.loc[before, "label"] != changed.loc[before, "label"]
    assert set(full.loc[before][moved]["bar_start"]) <= {cutoff - pd.Timedelta(minutes=1)}
    assert (full.loc[~before, columns] != changed.loc[~before, columns]).any().any()


def test_walk_forward_tests_on_the_last_partition_only(prepared, tables, cfg):
    train, valid, test = prepared
    last = DAYS[-1].isoformat()
    assert set(test["partition"]) == {last}
    assert last not in set(train["partition"]) | set(valid["partition"])
    assert set(train["partition"]) == {DAYS[0].isoformat(), DAYS[1].isoformat()}
    # validation follows training in time, one bar of embargo between them
    assert train["bar_start"].max() + pd.Timedelta(minutes=1) < valid["bar_start"].min()
    assert test["bar_start"].min() > valid["bar_start"].max()
    # the order the partitions are given in does not matter
    again = training.prepare(tables[::-1], cfg)
    for a, b in zip(prepared, again):
        pd.testing.assert_frame_equal(a, b)


def test_model_beats_the_majority_baseline_with_finite_metrics(evaluated, prepared):
    model, metrics, predictions = evaluated
    test = prepared[2]
    assert all(math.isfinite(v) for v in metrics.values())
    assert {"test_accuracy", "test_log_loss", "test_auc", "baseline_majority_accuracy",
            "baseline_persistence_accuracy", "test_examples"} <= set(metrics)
    assert metrics["test_examples"] == len(test) == len(predictions)
    assert metrics["test_accuracy"] >= metrics["baseline_majority_accuracy"]
    assert metrics["test_log_loss"] < metrics["baseline_majority_log_loss"]
    assert metrics["test_auc"] > 0.5
    assert 1 <= model.best_iteration <= model.iterations

    assert list(predictions.columns) == ["symbol", "bar_start", "label", "probability", "predicted", "majority",
                                         "persistence"]
    assert predictions["probability"].between(0, 1).all()
    assert (predictions["majority"] == model.majority_label).all()
    assert metrics["test_accuracy"] == pytest.approx((predictions["predicted"] == predictions["label"]).mean())
    assert metrics["baseline_persistence_accuracy"] == pytest.approx(
        (predictions["persistence"] == predictions["label"]).mean())


def test_training_is_deterministic(prepared, evaluated, cfg):
    train, valid, test = prepared
    again = training.train(train, valid, cfg)
    _, predictions = training.evaluate(again, test)
    np.testing.assert_array_equal(predictions["probability"], evaluated[2]["probability"])
    np.testing.assert_array_equal(training.predict(again.booster, test, num_iteration=again.best_iteration),
                                  predictions["probability"])


def test_a_window_needs_two_partitions_and_enough_bars(tables, cfg):
    with pytest.raises(ValueError, match="at least 2 partitions"):
        training.prepare(tables[:1], cfg)
    with pytest.raises(ValueError, match="distinct days"):
        training.prepare([tables[0], tables[0]], cfg)
    strict = cfg.model_copy(update={"min_train_examples": 100_000})
    with pytest.raises(DataQualityError, match="training bars"):
        training.prepare(tables, strict)


def test_window_picks_the_last_k_partitions_up_to_the_run(cfg):
    available = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
    assert training.window(available, "2024-01-04", cfg) == ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert training.window(available[:2], "2024-01-02", cfg) == ["2024-01-01", "2024-01-02"]
    with pytest.raises(ValueError, match="not among"):
        training.window(available, "2024-01-09", cfg)


def test_prepare_reads_committed_snapshots(retrain_home, tables, prepared, cfg):
    from retrain import snapshots

    committed = []
    for day, table in zip(DAYS, tables):
        curated = tick_reader.normalize_partition([("ticks.csv", tick_generator.to_csv_bytes(table))], day.isoformat())
        committed.append(snapshots.commit("ticks", day.isoformat(),
                                          lambda folder, t=curated: ticks.write_partition(t, folder),
                                          rows=curated.num_rows, source_files=[], partition=day.isoformat()))
    again = training.prepare(committed, cfg)
    for a, b in zip(prepared, again):
        pd.testing.assert_frame_equal(a, b)


def test_bars_accept_plain_string_symbols_and_keep_the_configured_universe(tables, cfg):
    table = tables[0]
    plain = table.set_column(1, "symbol", table["symbol"].cast(pa.string()))
    pd.testing.assert_frame_equal(training.bars(plain), training.bars(table))
    narrow = cfg.model_copy(update={"symbols": ["AAPL", "MSFT"]})
    assert set(training.partition_features(table, narrow)["symbol"]) == {"AAPL", "MSFT"}
