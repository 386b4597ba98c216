"""The tick quality gate (expectations/ticks.json on retrain.data.tick_quality.quality_frame): each rule on a
clean partition with one oddity injected, the feed settings it reads, and the gate's messages over a window."""

from __future__ import annotations

import json
import re
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from retrain import config, quality, settings
from retrain.data import tick_generator, tick_quality, ticks
from retrain.errors import ConfigError, DataQualityError
from retrain.workloads import timeseries

DATASET = "ticks"
DAY = date(2024, 1, 2)
PARTITION = DAY.isoformat()
SYMBOLS = list(ticks.DEFAULT_SYMBOLS)
TICKS = 16_000  # 4 symbols x ~4k ticks: every symbol well above the suite's 1,000
EQUITIES = config.TickFeed(symbols={s: {"tick_size": 0.01, "lot_size": 1} for s in SYMBOLS})
CRYPTO = config.TickFeed(symbols={s: {"tick_size": 0.01} for s in SYMBOLS})  # any decimal size
SESSION = config.TickFeed(symbols={s: {"tick_size": 0.01, "lot_size": 1} for s in SYMBOLS},
                          session={"cut": "17:00", "zone": "America/New_York"})
pytestmark = pytest.mark.usefixtures("repo_expectations")


def _v2(frame: pd.DataFrame) -> pa.Table:
    """A frame of the curated columns as a curated v2 table, rows by symbol then time."""
    frame = frame.assign(symbol=frame["symbol"].astype(str)).sort_values(["symbol", "timestamp"], kind="stable")
    return pa.Table.from_pandas(frame[ticks.COLUMNS], schema=ticks.SCHEMA, preserve_index=False) \
        .replace_schema_metadata(None)


def _frame(table: pa.Table) -> pd.DataFrame:
    """A curated table (any schema) as an editable frame of plain strings and floats, v2 columns."""
    frame = ticks.upgrade(table).to_pandas()
    for column in ("symbol", "side", "kind", "venue"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


@pytest.fixture(scope="module")
def generated() -> pa.Table:
    """A day of the equities shape (schema v1: trades only, integer sizes, no trade id)."""
    return tick_generator.generate_ticks(DAY, SYMBOLS, TICKS, seed=1)


@pytest.fixture(scope="module")
def equities(generated) -> pd.DataFrame:
    return _frame(generated).sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def crypto(equities) -> pd.DataFrame:
    """The same day as a crypto venue sends it: every other tick of a symbol a quote row (no price, size or
    side), the trades with fractional sizes, their own trade ids and a venue."""
    frame = equities.copy()
    quote = (frame.groupby("symbol").cumcount() % 2 == 1).to_numpy()
    frame.loc[quote, ["price", "size"]] = np.nan
    frame.loc[quote, "side"] = None
    frame["kind"] = np.where(quote, "quote", "trade")
    frame.loc[~quote, "size"] = frame.loc[~quote, "size"] / 1000  # 0.037 and the like
    frame["trade_id"] = [None if q else f"{s}-{i}" for i, (q, s) in enumerate(zip(quote, frame["symbol"]))]
    frame["venue"] = "X"
    return frame


def _validate(frame, feed=EQUITIES, partition: str = PARTITION, report_dir=None) -> quality.GateReport:
    table = frame if isinstance(frame, pa.Table) else _v2(frame)
    return timeseries.validate_partition(table, partition, feed, report_dir=str(report_dir) if report_dir else None)


def _passes(frame, feed=EQUITIES, partition: str = PARTITION) -> None:
    report = _validate(frame, feed, partition)
    assert report.success, report.failures


def _fails(frame, feed=EQUITIES, partition: str = PARTITION) -> tuple[str, dict[str, dict]]:
    """The refusal's message and its failures by derived column (or rule), each checked to name the partition."""
    report = _validate(frame, feed, partition)
    assert not report.success
    with pytest.raises(DataQualityError) as info:
        quality.enforce(report)
    message = str(info.value)
    for failure in report.failures:
        assert failure["partition"] == partition
        assert message.count(f"  - {partition}: {failure['rule']} (observed: {failure['observed']})") == 1, message
    return message, {f["column"] if f["column"] not in ("price", "step_ns", "symbol_ticks") else _plain(f["rule"]): f
                     for f in report.failures}


def _plain(rule: str) -> str:
    """A failure's rule without its bounds."""
    return re.sub(r" \[[^\[\]]*\]$", "", rule)


def _suite(scope: str = "partition") -> list[dict]:
    spec = json.loads(quality.suite_path(DATASET).read_text())["expectations"]
    return [e for e in spec if e["meta"].get("scope", "partition") == scope]


# --------------------------------------------------------------------------------------------------------
# clean partitions and the derived columns


def test_clean_partitions_pass_in_both_schemas(generated, crypto, tmp_path):
    report = _validate(generated, report_dir=tmp_path)  # a v1 partition, upgraded
    assert report.success, report.failures
    assert report.evaluated == len(_suite("partition")) and len(_suite("window")) == 1
    assert "Verdict: PASSED" in (tmp_path / "quality_report.md").read_text()
    _passes(crypto, CRYPTO)


def test_quality_frame_derives_the_checked_columns(crypto):
    frame = tick_quality.quality_frame(_v2(crypto), PARTITION, CRYPTO)
    assert list(frame.columns) == tick_quality.KEPT + tick_quality.DERIVED and "trade_id" not in frame
    quote = (frame["kind"] == "quote").to_numpy()
    assert frame.loc[quote, "outside_ticks"].isna().all() and frame.loc[~quote, "outside_ticks"].eq(0).all()
    assert frame.loc[quote, "quote_age_s"].eq(0).all() and frame.loc[quote, "off_lot_grid"].isna().all()
    symbols = frame["symbol"].astype(str)
    first = ~symbols.duplicated()
    assert frame.loc[first, "step_ns"].isna().all() and (frame.loc[~first, "step_ns"] > 0).all()
    np.testing.assert_allclose(frame.loc[~first, "gap_s"], frame.loc[~first, "step_ns"] / 1e9)
    assert (frame["symbol_ticks"] == symbols.map(symbols.value_counts())).all()
    assert frame["in_partition"].eq(1).all() and frame["duplicate"].eq(0).all() and frame["crossed"].eq(0).all() and frame["locked"].eq(0).all()
    assert frame["off_tick_grid"].eq(0).all()
    mid = (frame["bid"] + frame["ask"]) / 2
    np.testing.assert_allclose(frame["spread_bps"], (frame["ask"] - frame["bid"]) / mid * 1e4)


def test_quote_age_counts_from_the_last_quote_row_or_change_of_bid_or_ask():
    start = pd.Timestamp("2024-01-02 14:00", tz="UTC")
    rows = [  # seconds, kind, bid, ask
        (0, "quote", 10.00, 10.02), (10, "trade", 10.00, 10.02), (70, "trade", 10.00, 10.02),
        (80, "trade", 10.00, 10.03), (90, "quote", 10.00, 10.03), (95, "trade", 10.00, 10.03),
    ]
    frame = pd.DataFrame({
        "timestamp": [start + pd.Timedelta(seconds=s) for s, *_ in rows], "symbol": "AAPL",
        "price": [np.nan if k == "quote" else a for _, k, _, a in rows],
        "size": [np.nan if k == "quote" else 1.0 for _, k, *_ in rows],
        "side": [None if k == "quote" else "B" for _, k, *_ in rows],
        "bid": [b for *_, b, _ in rows], "ask": [a for *_, a in rows], "kind": [k for _, k, *_ in rows],
        "trade_id": None, "venue": None,
    })
    derived = tick_quality.quality_frame(_v2(frame), PARTITION, EQUITIES)
    assert derived["quote_age_s"].tolist() == [0, 10, 70, 0, 0, 5]


# --------------------------------------------------------------------------------------------------------
# the rules for real oddities, one at a time


def test_trades_outside_the_quote_beyond_the_tolerance_fail(crypto):
    trades = np.flatnonzero((crypto["kind"] == "trade").to_numpy())
    one_tick = crypto.copy()
    one_tick.loc[trades, "price"] = one_tick.loc[trades, "ask"] + 0.01  # every trade: within the tolerance
    _passes(one_tick, CRYPTO)
    few = crypto.copy()
    few.loc[trades[::50], "price"] = few.loc[trades[::50], "ask"] + 0.03  # 2% of trades: within the mostly share
    _passes(few, CRYPTO)

    bad = crypto.copy()
    bad.loc[trades[::10], "price"] = bad.loc[trades[::10], "ask"] + 0.03  # 10% of trades three ticks out
    message, failures = _fails(bad, CRYPTO)
    assert set(failures) == {"outside_ticks"}
    failure = failures["outside_ticks"]
    assert "trades lie inside [bid, ask] within a tolerance" in failure["rule"]
    assert "[max_value=1.0, mostly=0.95]" in failure["rule"]
    assert failure["observed"].startswith(f"{len(trades[::10])} unexpected (10") and "e.g. [3.0" in failure["observed"]


def test_quotes_that_stop_while_trades_go_on_fail(crypto):
    """The real case: one symbol's quotes stop after 4 minutes while its trades go on for hours; its trades
    keep printing at the last quote here, so only the staleness rule can see it."""
    frame = crypto.copy()
    aapl = (frame["symbol"] == "AAPL").to_numpy()
    quote = (frame["kind"] == "quote").to_numpy()
    cutoff = frame.loc[aapl, "timestamp"].min() + pd.Timedelta(minutes=4)
    last = frame[aapl & quote & (frame["timestamp"] <= cutoff).to_numpy()].iloc[-1]
    after = aapl & (frame["timestamp"] > last["timestamp"]).to_numpy()
    frame = frame[~(after & quote)].copy()
    stale = after[frame.index]
    frame.loc[stale, ["bid", "ask"]] = [last["bid"], last["ask"]]
    frame.loc[stale, "price"] = np.where(frame.loc[stale, "side"] == "B", last["ask"], last["bid"])
    message, failures = _fails(frame.reset_index(drop=True), CRYPTO)
    assert set(failures) == {"quote_age_s"}
    failure = failures["quote_age_s"]
    hours = (frame.loc[stale, "timestamp"].max() - last["timestamp"]).total_seconds()
    assert failure["observed"] == pytest.approx(hours) and hours > 5 * 3600
    assert "quote staleness at trades" in failure["rule"] and "[max_value=300.0]" in failure["rule"]
    assert f"(observed: {failure['observed']})" in message


def test_a_crossed_quote_fails_even_once(crypto):
    """The tick issue's bad input "bid >= ask": a bid above the ask is never a price anyone could trade at."""
    quotes = np.flatnonzero((crypto["kind"] == "quote").to_numpy())
    one = crypto.copy()
    one.loc[quotes[5], "ask"] = one.loc[quotes[5], "bid"] - 0.02
    _, failures = _fails(one, CRYPTO)
    assert set(failures) == {"crossed"} and failures["crossed"]["observed"] == 1
    assert failures["crossed"]["rule"] == "no quote is crossed (ask < bid: a broken or swapped feed) [max_value=0.0]"


def test_locked_quotes_beyond_the_share_fail(crypto):
    quotes = np.flatnonzero((crypto["kind"] == "quote").to_numpy())
    few = crypto.copy()
    few.loc[quotes[:3], "ask"] = few.loc[quotes[:3], "bid"]  # three locked quotes: moments, not a broken feed
    _passes(few, CRYPTO)

    bad = crypto.copy()
    locked = quotes[::25]  # 2% of all ticks locked (ask = bid)
    bad.loc[locked, "ask"] = bad.loc[locked, "bid"]
    _, failures = _fails(bad, CRYPTO)
    assert set(failures) == {"locked"}
    assert failures["locked"]["observed"] == pytest.approx(len(locked) / len(bad))
    assert failures["locked"]["rule"] == "share of ticks with a locked quote (ask = bid) [max_value=0.01]"


def test_a_symbol_silent_for_longer_than_the_gap_fails(equities):
    clock = equities["timestamp"]
    silent = (equities["symbol"] == "MSFT") & clock.between(pd.Timestamp("2024-01-02 16:00", tz="UTC"),
                                                             pd.Timestamp("2024-01-02 16:20", tz="UTC"))
    _, failures = _fails(equities[~silent])
    assert set(failures) == {"gap_s"}
    kept = clock[(equities["symbol"] == "MSFT") & ~silent]
    assert failures["gap_s"]["observed"] == pytest.approx(kept.diff().max().total_seconds())
    assert failures["gap_s"]["observed"] >= 1200
    assert "without a tick inside the partition" in failures["gap_s"]["rule"]


def test_prices_off_the_tick_grid_fail(equities):
    bad = equities.copy()
    rows = bad.index[::20]  # 5% of ticks half a cent off: a unit or rounding error upstream
    bad.loc[rows, ["price", "bid", "ask"]] += 0.005
    _, failures = _fails(bad)
    assert set(failures) == {"off_tick_grid"}
    assert failures["off_tick_grid"]["observed"].startswith(f"{len(rows)} unexpected (5%), e.g. [0.5")
    # the grid is the feed's, per symbol: AAPL on a 5-cent grid puts most of its prices off it
    coarse = config.TickFeed(symbols={s: {"tick_size": 0.05 if s == "AAPL" else 0.01} for s in SYMBOLS})
    _, failures = _fails(equities, coarse)
    assert set(failures) == {"off_tick_grid"}


def test_fractional_sizes_pass_without_a_lot_size_and_fail_off_the_lot(crypto):
    _passes(crypto, CRYPTO)
    _passes(crypto, config.TickFeed(symbols={s: {"lot_size": 0.001} for s in SYMBOLS}))
    _, failures = _fails(crypto, EQUITIES)  # lot_size 1: whole shares only
    assert set(failures) == {"off_lot_grid"}
    assert "lot grid" in failures["off_lot_grid"]["rule"] and "unexpected" in failures["off_lot_grid"]["observed"]


def test_a_quote_only_partition_passes(crypto):
    quotes = crypto[crypto["kind"] == "quote"]
    assert quotes["price"].isna().all() and quotes["size"].isna().all() and quotes["side"].isna().all()
    _passes(quotes, EQUITIES)  # trade rules (prices, sizes, sides, lots, quote checks) have nothing to judge
    derived = tick_quality.quality_frame(_v2(quotes), PARTITION, EQUITIES)
    assert derived["outside_ticks"].isna().all() and derived["quote_age_s"].eq(0).all()


def test_duplicates_are_judged_on_trade_id_when_present(crypto, equities):
    trade = crypto.index[(crypto["kind"] == "trade").to_numpy()][100]
    fill = crypto.loc[[trade]].assign(trade_id="another-fill")  # same instant, price, size and side
    _passes(pd.concat([crypto, fill]), CRYPTO)
    elsewhere = crypto.loc[[trade]].assign(venue="Y")  # the same id on another venue
    _passes(pd.concat([crypto, elsewhere]), CRYPTO)

    replayed = crypto.loc[[trade]].assign(timestamp=crypto.loc[trade, "timestamp"] + pd.Timedelta(milliseconds=3))
    message, failures = _fails(pd.concat([crypto, replayed]), CRYPTO)
    assert set(failures) == {"duplicate"} and failures["duplicate"]["observed"] == 1
    assert "the same symbol, venue and trade_id" in failures["duplicate"]["rule"]

    # without trade ids (v1): a tick equal in every column, here the same file landed twice
    _, failures = _fails(pd.concat([equities, equities]))
    assert set(failures) == {"duplicate"} and failures["duplicate"]["observed"] == len(equities)


def test_a_session_across_utc_midnight_is_one_partition(equities):
    """FX: partition 2024-01-03 is the session from 17:00 New York on the 2nd to 17:00 on the 3rd."""
    night = equities.assign(timestamp=equities["timestamp"] + pd.Timedelta(hours=9, minutes=30))  # 23:00-05:30 UTC
    assert night["timestamp"].dt.date.nunique() == 2
    # every tick lies inside the session; but a session has known bounds, so a feed that stops at 05:30 UTC,
    # 16.5 hours before the session closes (22:00 UTC), has a gap there
    _, failures = _fails(night, SESSION, "2024-01-03")
    assert set(failures) == {"gap_s"}
    last = night.groupby("symbol")["timestamp"].max().min()  # the symbol that stops first
    assert failures["gap_s"]["observed"] == pytest.approx((pd.Timestamp("2024-01-03 22:00", tz="UTC") - last).total_seconds())
    # (a feed that ticks through its whole session passes: the fx-quotes profile in test_tick_feeds.py)
    start, end = SESSION.partition_bounds("2024-01-03")
    assert pd.Timestamp(start, tz="UTC") == pd.Timestamp("2024-01-02 22:00", tz="UTC")
    # the same ticks as UTC day 2024-01-03: those before midnight lie outside; gaps count inside only
    _, failures = _fails(night, EQUITIES, "2024-01-03")
    assert set(failures) == {"in_partition"} and failures["in_partition"]["observed"] == 0
    assert "inside the partition" in failures["in_partition"]["rule"]


def test_the_symbol_set_is_the_feeds_and_a_failure_names_missing_and_unexpected_symbols():
    table = tick_generator.generate_ticks(DAY, ["AAPL", "MSFT", "AMZN", "TSLA"], TICKS, seed=1)
    message, failures = _fails(table)
    assert set(failures) == {"symbol"}
    failure = failures["symbol"]
    assert failure["observed"] == "missing [GOOG], unexpected [TSLA]"
    assert "exactly the feed's" in failure["rule"] and "GOOG" in failure["rule"]
    assert f"  - {PARTITION}: {failure['rule']} (observed: missing [GOOG], unexpected [TSLA])" in message
    assert "unique_value_count" not in json.dumps(_suite())
    _passes(table, config.TickFeed(symbols=["AAPL", "AMZN", "MSFT", "TSLA"]))


@pytest.mark.parametrize("price", [-1.5, 0.0])
def test_non_positive_trade_prices_and_sizes_fail(crypto, price):
    bad = crypto.copy()
    trade = bad.index[(bad["kind"] == "trade").to_numpy()][10]
    bad.loc[trade, ["price", "size"]] = price
    _, failures = _fails(bad, CRYPTO)
    assert set(failures) == {"trade prices are positive", "size"}
    assert f"e.g. [{price}]" in failures["trade prices are positive"]["observed"]
    assert "trade sizes are positive" in failures["size"]["rule"]


def test_a_spread_too_wide_fails(crypto):
    bad = crypto.copy()
    quote = bad.index[(bad["kind"] == "quote").to_numpy()][30]
    bad.loc[quote, "ask"] = round(bad.loc[quote, "bid"] * 1.01, 2)
    _, failures = _fails(bad, CRYPTO)
    assert set(failures) == {"spread_bps"} and failures["spread_bps"]["observed"] == pytest.approx(100, rel=0.01)


def test_timestamps_going_backwards_within_a_symbol_fail(generated):
    rows = np.arange(generated.num_rows)
    rows[[100, 101]] = [101, 100]  # file order, as a table not built by the reader may hold it
    _, failures = _fails(generated.take(pa.array(rows)))
    assert set(failures) == {"timestamps never go backwards within a symbol (negative step = out of order)"}


def test_a_symbol_with_too_few_ticks_fails(equities):
    goog = (equities["symbol"] == "GOOG").to_numpy()
    _, failures = _fails(equities[~goog | (np.cumsum(goog) <= 10)])
    [failure] = failures.values()
    assert failure["column"] == "symbol_ticks" and failure["observed"] == 10


# --------------------------------------------------------------------------------------------------------
# the gate over a window of committed partitions: window rules, messages


WINDOW = ["2026-03-02", "2026-03-03", "2026-03-04"]  # window_partitions 3 (configs/time_series_training.yaml)


def _commit(tmp_path, tables: list[pa.Table]) -> dict:
    """Land and ingest one v1 table per partition of WINDOW; the window a run names for its last one."""
    from retrain.ingest import landing
    from retrain.ingest import ticks as ingest_ticks

    for day, table in zip(WINDOW, tables):
        folder = tmp_path / "drop" / f"date={day}"
        folder.mkdir(parents=True)
        (folder / "ticks.csv").write_bytes(tick_generator.to_csv_bytes(table))
        landing.land(DATASET, str(folder))
        ingest_ticks.ingest_partition(day, f"run-{day}")
    return timeseries.named_window(DATASET, WINDOW[-1], timeseries.dataset_config())


def _day(day: str, seed: int) -> pa.Table:
    return tick_generator.generate_ticks(date.fromisoformat(day), SYMBOLS, TICKS, seed=seed)


def _locked(table: pa.Table, every: int) -> pa.Table:
    """Every ``every``-th tick's quote locked at its trade price (ask = bid = price): still inside the quote."""
    frame = table.to_pandas()
    frame.loc[frame.index[::every], ["bid", "ask"]] = frame.loc[frame.index[::every], ["price", "price"]].to_numpy()
    return pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False).replace_schema_metadata(None)


def _flat(table: pa.Table) -> pa.Table:
    """The same trades around a mid price that never moves: the quote alternates between one and two ticks
    each side of it (so it keeps changing), trades print at the bid or the ask."""
    frame = table.to_pandas()
    level = frame.groupby("symbol", observed=True)["bid"].transform("first").round(2)
    width = np.where(np.arange(len(frame)) % 2 == 0, 0.01, 0.02)
    frame["bid"], frame["ask"] = (level - width).round(2), (level + width).round(2)
    frame["price"] = np.where(frame["side"] == "B", frame["ask"], frame["bid"])
    return pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False).replace_schema_metadata(None)


def test_the_gate_names_each_failing_partition_once_and_the_window_only_in_its_header(retrain_home, tmp_path):
    tables = [_day(d, seed) for seed, d in enumerate(WINDOW)]
    window = _commit(tmp_path, [_locked(tables[0], 20), tables[1], _locked(tables[2], 20)])
    with pytest.raises(DataQualityError) as info:
        timeseries.gate(window, timeseries.dataset_config(), str(tmp_path / "work"))
    lines = str(info.value).splitlines()
    assert lines[0] == "ticks window 2026-03-02..2026-03-04 failed 2 expectation(s):"
    rule = "share of ticks with a locked quote (ask = bid) [max_value=0.01]"
    assert [line.split(" (observed: ")[0] for line in lines[1:3]] == [f"  - 2026-03-02: {rule}",
                                                                     f"  - 2026-03-04: {rule}"]
    assert all(float(line.split("(observed: ")[1].rstrip(")")) == pytest.approx(0.05, abs=1e-3) for line in lines[1:3])
    assert lines[3].startswith("  report: ") and "2026-03-02..2026-03-04" not in "\n".join(lines[1:])
    assert [f["partition"] for f in info.value.failures] == ["2026-03-02", "2026-03-04"]
    # what no run can train now, as the freshness ledger names it: the window and the two failing partitions
    versions = {v["partition"]: v["version"] for v in window["versions"]}
    assert info.value.rejects == [timeseries.window_digest(window["versions"])[:16], versions["2026-03-02"],
                                  versions["2026-03-04"]]
    assert (tmp_path / "work" / "quality" / "2026-03-03" / "quality_report.md").exists()


def test_a_window_whose_target_is_almost_one_class_fails_with_that_reason(retrain_home, tmp_path):
    window = _commit(tmp_path, [_flat(_day(d, seed)) for seed, d in enumerate(WINDOW)])
    with pytest.raises(DataQualityError) as info:
        timeseries.gate(window, timeseries.dataset_config(), str(tmp_path / "work"))
    [failure] = info.value.failures  # every partition passes its own rules
    # a flat mid makes every next bar flat ("not up"): the float noise between the two quote widths' mids
    # (under 1e-9 in log return) is flat too, not up
    assert failure["partition"] == "window 2026-03-02..2026-03-04" and failure["observed"] == 0
    assert failure["rule"].startswith("target almost one class: the share of up bars (label 1)")
    assert f"  - window 2026-03-02..2026-03-04: {failure['rule']} (observed: {failure['observed']})" in str(info.value)
    assert "[min_value=0.05, max_value=0.95]" in failure["rule"]
    assert (tmp_path / "work" / "quality" / "window" / "quality_report.md").exists()


def test_a_clean_window_passes_the_gate_and_its_split_is_what_trains(retrain_home, tmp_path, monkeypatch):
    from retrain.training import ticks as tick_training

    window = _commit(tmp_path, [_day(d, seed) for seed, d in enumerate(WINDOW)])
    work = str(tmp_path / "work")
    summary = timeseries.gate(window, timeseries.dataset_config(), work)
    assert summary["verdict"] == "passed" and [p["verdict"] for p in summary["partitions"]] == ["passed"] * 3
    assert summary["window"]["verdict"] == "passed" and summary["window"]["evaluated"] == 1

    def again(*args, **kwargs):
        raise AssertionError("the window was prepared twice")

    monkeypatch.setattr(tick_training, "prepare", again)  # the features step reuses the split the gate judged
    assert timeseries.prepare(window, timeseries.dataset_config(), work) == summary["bars"]
    assert len(pd.read_parquet(tmp_path / "work" / "train.parquet")) == summary["bars"]["train"] > 0
    # a split made from other settings (or another window) is never reused: it is made again
    other = timeseries.dataset_config().model_copy(update={"valid_fraction": 0.3})
    with pytest.raises(AssertionError, match="prepared twice"):
        timeseries.prepare(window, other, work)
    with pytest.raises(AssertionError, match="prepared twice"):
        timeseries.prepare(window | {"versions": window["versions"][::-1][:2]}, timeseries.dataset_config(), work)


def test_a_repeated_failure_is_listed_once():
    failure = {"partition": "2024-01-03", "rule": "a rule", "observed": 1, "expectation": "e", "column": "c"}
    error = DataQualityError(DATASET, "2024-01-01..2024-01-03", [failure, dict(failure)], what="window")
    assert str(error) == ("ticks window 2024-01-01..2024-01-03 failed 1 expectation(s):\n"
                          "  - 2024-01-03: a rule (observed: 1)")
    assert error.failures == [failure]


def test_the_suite_takes_its_symbols_from_the_caller_and_knows_its_scopes(equities, tmp_path, monkeypatch):
    frame = tick_quality.quality_frame(_v2(equities), PARTITION, EQUITIES)
    with pytest.raises(ConfigError, match=r"ticks.json: the suite takes \['symbols'\] from its caller"):
        quality.validate(DATASET, frame, version=PARTITION)
    spec = json.loads(quality.suite_path(DATASET).read_text())
    spec["expectations"][-1]["meta"]["scope"] = "day"
    (tmp_path / "ticks.json").write_text(json.dumps(spec))
    monkeypatch.setenv("RETRAIN_EXPECTATIONS", str(tmp_path))
    settings.reset_settings()
    quality.load_suite.cache_clear()
    try:
        with pytest.raises(ConfigError, match="meta.scope must be 'partition' or 'window' \\(got 'day'\\)"):
            quality.load_suite(DATASET)
    finally:
        monkeypatch.undo()
        settings.reset_settings()
        quality.load_suite.cache_clear()
