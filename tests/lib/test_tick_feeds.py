"""Each real feed shape end to end: the sample profiles (``retrain sample-data ticks --profile``) ingested with the
feed settings they need, gated and trained; then every quality rule that applies to the shape, each with one
oddity injected into that shape's own curated partition (the rules themselves are tested in test_tick_quality)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from retrain import config, samples
from retrain.data import tick_generator, tick_reader, ticks
from retrain.workloads import timeseries

START = date(2026, 3, 2)  # a Monday: three weekdays, so the FX market is open on each
DAYS = 3
TICKS = {"equities": 12_000, "crypto": 30_000, "fx-quotes": 24_000}  # every symbol >= 1,000 ticks, no gap > 600 s
PROFILES = list(TICKS)


def _feed(profile: str) -> config.TickFeed:
    return config.TickFeed.model_validate(tick_generator.PROFILES[profile].feed())


@pytest.fixture(scope="module")
def partitions() -> dict[str, pa.Table]:
    """One curated partition of each profile, read by the real reader with that profile's feed settings."""
    out = {}
    for profile in PROFILES:
        raw = tick_generator.PROFILES[profile].csv(START, ticks_per_day=TICKS[profile], seed=3)
        out[profile] = tick_reader.normalize_partition([("ticks.csv", raw)], START.isoformat(),
                                                       source_timezone=_feed(profile).source_timezone)
    return out


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_lands_passes_its_gate_and_trains(profile, retrain_home, edit_config, tmp_path):
    from retrain.ingest import landing
    from retrain.ingest import ticks as ingest_ticks

    edit_config("feeds", lambda raw: raw["feeds"].update(ticks=tick_generator.PROFILES[profile].feed()))
    folders = samples.ticks(str(tmp_path / "drop"), start=START, days=DAYS, ticks_per_day=TICKS[profile], seed=7,
                            profile=profile)
    assert len(folders) == DAYS
    for folder in folders:
        landing.land("ticks", folder)
        partition = folder.rsplit("date=", 1)[1]
        assert ingest_ticks.ingest_partition(partition, f"run-{partition}").status == "ingested"
    cfg = timeseries.dataset_config()
    assert cfg.symbols == list(tick_generator.PROFILES[profile].symbols)  # the training's symbols are the feed's
    window = timeseries.named_window("ticks", ingest_ticks.partitions()[-1], cfg)
    work = str(tmp_path / "work")
    summary = timeseries.gate(window, cfg, work)
    assert summary["verdict"] == "passed" and summary["window"]["verdict"] == "passed", summary
    timeseries.prepare(window, cfg, work)
    model = timeseries.train(window, cfg, work)
    metrics = timeseries.evaluate(window, cfg, work)
    assert model["iterations"] >= 1 and 0 <= metrics["test_accuracy"] <= 1
    table = ticks.read_partition(timeseries.window_snapshots(window)[-1])
    kinds = set(table["kind"].to_pylist())
    assert kinds == {"equities": {"trade"}, "crypto": {"trade", "quote"}, "fx-quotes": {"quote"}}[profile]


# ---------------------------------------------------------------------------------------------------------
# every rule with each shape

def _frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    for column in ("symbol", "side", "kind", "venue"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def _table(frame: pd.DataFrame) -> pa.Table:
    frame = frame.sort_values(["symbol", "timestamp"], kind="stable")
    return pa.Table.from_pandas(frame[ticks.COLUMNS], schema=ticks.SCHEMA, preserve_index=False) \
        .replace_schema_metadata(None)


def _trades(frame: pd.DataFrame) -> np.ndarray:
    return (frame["kind"] == "trade").to_numpy()


def _grid(frame: pd.DataFrame, rows, feed: config.TickFeed, field: str) -> pd.Series:
    """Each row's tick_size or lot_size, from its symbol's settings in the feed."""
    return frame.loc[rows, "symbol"].map(lambda s: getattr(feed.symbols[s], field))


def _one_symbol(frame: pd.DataFrame) -> np.ndarray:
    return (frame["symbol"] == frame["symbol"].iloc[0]).to_numpy()


def drop_a_symbol(frame, feed):
    return frame[~_one_symbol(frame)]


def lock_quotes(frame, feed):
    rows = frame.index[::10]
    frame.loc[rows, "ask"] = frame.loc[rows, "bid"]
    return frame


def cross_a_quote(frame, feed):
    frame.loc[frame.index[7], "ask"] = frame.loc[frame.index[7], "bid"] - 2 * _grid(frame, frame.index[7:8], feed,
                                                                                     "tick_size").iloc[0]
    return frame


def widen_a_quote(frame, feed):
    frame.loc[frame.index[5], "ask"] = frame.loc[frame.index[5], "bid"] * 1.02
    return frame


def trade_outside_the_quote(frame, feed):
    rows = frame.index[_trades(frame)][::5]
    frame.loc[rows, "price"] = frame.loc[rows, "ask"] + 5 * _grid(frame, rows, feed, "tick_size")
    return frame


def freeze_the_quotes(frame, feed):
    """One symbol's quote stops changing halfway through the day while its trades go on."""
    mine = _one_symbol(frame)
    rows = frame.index[mine]
    half = rows[len(rows) // 2]
    after = mine & (frame.index >= half)
    frame.loc[after, ["bid", "ask"]] = frame.loc[half, ["bid", "ask"]].to_numpy()
    frame = frame[~(after & (frame["kind"] == "quote").to_numpy())]
    frame.loc[frame["kind"] == "trade", "price"] = frame["bid"]  # at the frozen bid: inside the quote
    return frame


def silence_a_symbol(frame, feed):
    """One symbol sends nothing for 30 minutes in the middle of its day."""
    mine = _one_symbol(frame)
    stamps = frame.loc[mine, "timestamp"]
    middle = stamps.iloc[len(stamps) // 2]
    quiet = mine & (frame["timestamp"] > middle).to_numpy() & (frame["timestamp"] < middle + pd.Timedelta("30min")).to_numpy()
    return frame[~quiet]


def off_the_tick_grid(frame, feed):
    rows = frame.index[::20]
    frame.loc[rows, "bid"] = frame.loc[rows, "bid"] - 0.3 * _grid(frame, rows, feed, "tick_size")
    return frame


def off_the_lot_grid(frame, feed):
    rows = frame.index[_trades(frame)][::7]
    frame.loc[rows, "size"] = frame.loc[rows, "size"] + 0.5 * _grid(frame, rows, feed, "lot_size")
    return frame


def repeat_rows(frame, feed):
    return pd.concat([frame, frame.iloc[100:110]])


def outside_the_partition(frame, feed):
    start, _ = feed.partition_bounds(START.isoformat())
    frame.loc[frame.index[0], "timestamp"] = pd.Timestamp(start - 3_600 * 10**9, tz="UTC")
    return frame


def zero_size_trade(frame, feed):
    frame.loc[frame.index[_trades(frame)][3], "size"] = 0.0
    return frame


# (mutation, the failure's column, a phrase of its rule, the profiles it applies to: trade rules need trades,
# the lot rule a lot_size)
RULES = [
    (drop_a_symbol, "symbol", "the partition's symbols are exactly the feed's", PROFILES),
    (lock_quotes, "locked", "locked quote", PROFILES),
    (cross_a_quote, "crossed", "no quote is crossed", PROFILES),
    (widen_a_quote, "spread_bps", "the spread stays within 50 bps", PROFILES),
    (trade_outside_the_quote, "outside_ticks", "trades lie inside", ["equities", "crypto"]),
    (freeze_the_quotes, "quote_age_s", "quote staleness at trades", ["equities", "crypto"]),
    (silence_a_symbol, "gap_s", "no symbol goes longer than this without a tick", PROFILES),
    (off_the_tick_grid, "off_tick_grid", "on the symbol's tick grid", PROFILES),
    (off_the_lot_grid, "off_lot_grid", "on the symbol's lot grid", ["equities", "crypto"]),
    (repeat_rows, "duplicate", "no tick is repeated", PROFILES),
    (outside_the_partition, "in_partition", "every tick lies inside the partition", PROFILES),
    (zero_size_trade, "size", "trade sizes are positive", ["equities", "crypto"]),
]
CASES = [pytest.param(profile, *rule[:3], id=f"{profile}-{rule[0].__name__}") for rule in RULES for profile in rule[3]]


@pytest.mark.usefixtures("repo_expectations")
@pytest.mark.parametrize("profile", PROFILES)
def test_each_profiles_clean_partition_passes_every_rule(profile, partitions):
    report = timeseries.validate_partition(partitions[profile], START.isoformat(), _feed(profile))
    assert report.success, report.failures


@pytest.mark.usefixtures("repo_expectations")
@pytest.mark.parametrize("profile, mutate, column, rule", CASES)
def test_each_rule_catches_its_oddity_in_each_shape(profile, mutate, column, rule, partitions):
    feed = _feed(profile)
    table = _table(mutate(_frame(partitions[profile]), feed))
    report = timeseries.validate_partition(table, START.isoformat(), feed)
    [failure] = report.failures  # that rule alone: the oddity trips nothing else
    assert failure["column"] == column and rule in failure["rule"], failure
    assert all(f["partition"] == START.isoformat() for f in report.failures)


# ---------------------------------------------------------------------------------------------------------
# the feed settings are stated once

def test_symbols_are_set_in_the_feed_settings_only(edit_config):
    from retrain.errors import ConfigError
    from retrain.workloads import adhoc

    edit_config("feeds", lambda raw: raw["feeds"]["ticks"].update(symbols=["BTC-USD", "ETH-USD"]))
    assert timeseries.dataset_config().symbols == ["BTC-USD", "ETH-USD"]
    with pytest.raises(ConfigError, match=r"override symbols = \['AAPL'\] for ticks: not overridable \(a feed's "
                                          r"symbols are set in configs/feeds.yaml only\)"):
        adhoc.effective_config("timeseries", "ticks", {"symbols": ["AAPL"]})
    edit_config("time_series_training", lambda raw: raw["datasets"]["ticks"].update(symbols=["AAPL"]))
    with pytest.raises(ConfigError, match=r"datasets.ticks.symbols \['AAPL'\] differ from the feed's symbols "
                                          r"\['BTC-USD', 'ETH-USD'\] in configs/feeds.yaml"):
        config.load("time_series_training")


def test_a_symbol_yaml_reads_as_something_else_must_be_quoted(config_dir):
    from retrain.errors import ConfigError

    path = config_dir / "feeds.yaml"
    path.write_text("feeds:\n  ticks:\n    symbols: [ON, '0700', NVDA]\n")
    with pytest.raises(ConfigError, match=r"symbol True must be text: quote it in the YAML \('ON', '0700'\)"):
        config.feed("ticks")
    path.write_text("feeds:\n  ticks:\n    symbols: ['ON', '0700', NVDA]\n")
    assert config.feed("ticks").symbol_names == ["ON", "0700", "NVDA"]


def test_minute_of_day_counts_from_the_session_open(partitions):
    """An FX session opens at 17:00 New York (22:00 UTC in March before the change): its first bar is minute 0,
    and the minutes run on across UTC midnight instead of starting again."""
    from retrain.training import ticks as tick_training

    cfg = config.TickTrainingConfig(symbols=["EURUSD"])
    frame = tick_training.partition_features(partitions["fx-quotes"], cfg, ("17:00", "America/New_York"))
    first = frame["bar_start"].min()
    assert set(frame["partition"]) == {"2026-03-02"}  # the session that ends on the 2nd, not the UTC day of its open
    assert first >= pd.Timestamp("2026-03-01 22:00", tz="UTC")
    assert frame.loc[frame["bar_start"] == first, "minute_of_day"].iloc[0] == (first - pd.Timestamp(
        "2026-03-01 22:00", tz="UTC")).total_seconds() // 60
    assert frame["minute_of_day"].is_monotonic_increasing and frame["minute_of_day"].max() < 24 * 60


@pytest.mark.usefixtures("repo_expectations")
@pytest.mark.parametrize("profile", PROFILES)
def test_a_window_whose_quotes_never_move_fails_the_target_balance_in_each_shape(profile):
    """The real case the window rule was written for: quotes frozen while the feed goes on, so the mid never
    moves and every next bar is "not up". Each shape's window of three partitions, its quotes frozen at the
    day's first quote, is refused with that reason; the same window as sent passes."""
    from retrain import quality
    from retrain.training import ticks as tick_training

    feed = _feed(profile)
    shape = tick_generator.PROFILES[profile]
    days = [date(2026, 3, d) for d in (2, 3, 4)]
    tables = [tick_reader.normalize_partition([("ticks.csv", shape.csv(day, ticks_per_day=TICKS[profile], seed=s))],
                                              day.isoformat(), source_timezone=feed.source_timezone)
              for s, day in enumerate(days)]

    def frozen(table: pa.Table) -> pa.Table:
        frame = _frame(table)
        for column in ("bid", "ask"):
            frame[column] = frame.groupby("symbol")[column].transform("first")
        frame.loc[frame["kind"] == "trade", "price"] = frame["bid"]
        return _table(frame)

    cfg = config.TickTrainingConfig(symbols=feed.symbol_names, window_partitions=3)
    session = None if feed.session is None else (feed.session.cut, feed.session.zone)
    for window, verdict in ((tables, True), ([frozen(t) for t in tables], False)):
        split = tick_training.prepare(window, cfg, session=session)
        examples = pd.concat([part[["label"]] for part in split], ignore_index=True)
        report = quality.validate("ticks", examples, version="window", scope=quality.WINDOW)
        assert report.success is verdict, report.failures
    [failure] = report.failures
    assert failure["rule"].startswith("target almost one class") and failure["observed"] == 0
