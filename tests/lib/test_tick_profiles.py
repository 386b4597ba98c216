"""Sample tick data in each real shape (`retrain sample-data ticks --profile ...`): the raw columns a vendor sends,
their grids and clocks, the partitions they cut, and the feed settings each profile states."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import yaml

from retrain import config, samples
from retrain.data import tick_generator, tick_reader, ticks
from retrain.errors import DataFormatError

DAY = date(2024, 3, 11)  # a Monday: the first FX session after New York moved to summer time
NY = "America/New_York"
FX_SESSION = ("17:00", NY)


def _rows(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(data.decode()))
    rows = list(reader)
    return reader.fieldnames, rows


def _utc_ns(text: str, zone: str | None = None) -> int:
    """Nanoseconds of an ISO timestamp: with its own offset, or wall time in ``zone``."""
    head, _, fraction = text.rstrip("Z").partition(".")
    moment = datetime.fromisoformat(head)
    moment = moment.replace(tzinfo=ZoneInfo(zone) if zone else timezone.utc)
    return int(moment.timestamp()) * 10**9 + int(fraction.ljust(9, "0"))


def _on_grid(text: str, step: float) -> bool:
    return Decimal(text) % Decimal(repr(step)) == 0


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "retrain", "sample-data", "ticks", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def crypto() -> bytes:
    return tick_generator.PROFILES["crypto"].csv(DAY, ticks_per_day=6000, seed=3)


@pytest.fixture(scope="module")
def fx() -> bytes:
    return tick_generator.PROFILES["fx-quotes"].csv(DAY, ticks_per_day=4000, seed=3)


# --------------------------------------------------------------------------------------------------------
# equities: today's shape


def test_equities_is_the_default_and_todays_v1_shape(tmp_path):
    folder, = samples.ticks(str(tmp_path), start=DAY, days=1, ticks_per_day=2000, seed=5)
    data = (tmp_path / "date=2024-03-11" / "ticks.csv").read_bytes()
    assert folder.endswith("date=2024-03-11")
    assert data == tick_generator.to_csv_bytes(tick_generator.generate_ticks(DAY, ticks.DEFAULT_SYMBOLS, 2000, seed=5))
    header, rows = _rows(data)
    assert header == ["timestamp", "symbol", "price", "size", "side", "bid", "ask"]
    assert {r["symbol"] for r in rows} == set(ticks.DEFAULT_SYMBOLS)
    assert all(re.fullmatch(r"[1-9][0-9]*", r["size"]) for r in rows)  # whole shares
    assert all(r["timestamp"].endswith("Z") for r in rows)
    stamps = [_utc_ns(r["timestamp"]) for r in rows]
    day_start = ticks.partition_bounds(DAY)[0]
    assert day_start + 13.5 * 3600e9 <= min(stamps) and max(stamps) < day_start + 20 * 3600e9  # the US session, UTC
    assert all(_on_grid(r[column], 0.01) for r in rows for column in ("price", "bid", "ask"))


# --------------------------------------------------------------------------------------------------------
# crypto: trades with fractional sizes, trade ids and venues, interleaved with quote rows, around the clock


def test_crypto_interleaves_trades_with_quote_rows(crypto):
    header, rows = _rows(crypto)
    assert header == ["timestamp", "symbol", "kind", "price", "size", "side", "bid", "ask", "trade_id", "venue"]
    assert len(rows) == 6000 and {r["symbol"] for r in rows} == set(tick_generator.CRYPTO_SYMBOLS)
    quotes = [r for r in rows if r["kind"] == "quote"]
    trades = [r for r in rows if r["kind"] == "trade"]
    assert len(quotes) + len(trades) == len(rows) and len(trades) > 1000 and len(quotes) > 1000
    assert all(r["price"] == r["size"] == r["side"] == r["trade_id"] == r["venue"] == "" for r in quotes)
    assert {r["side"] for r in trades} == {"B", "S"} and {r["venue"] for r in trades} == {"coinbase", "kraken",
                                                                                         "bitstamp"}
    # a trade carries the prevailing quote of its symbol and prints at its bid (sell) or its ask (buy)
    prevailing = {}
    for r in rows:
        if r["kind"] == "quote":
            prevailing[r["symbol"]] = (r["bid"], r["ask"])
        else:
            assert (r["bid"], r["ask"]) == prevailing[r["symbol"]]
            assert r["price"] == (r["ask"] if r["side"] == "B" else r["bid"])


def test_crypto_sizes_are_fractional_on_each_symbols_lot_grid_and_prices_on_its_tick_grid(crypto):
    _, rows = _rows(crypto)
    feed = tick_generator.PROFILES["crypto"].feed()["symbols"]
    assert feed["BTC-USD"] == {"tick_size": 0.1, "lot_size": 0.00001}
    assert len({spec["tick_size"] for spec in feed.values()}) == 3  # each coin its own price grid
    trades = [r for r in rows if r["kind"] == "trade"]
    assert sum("." in r["size"] for r in trades) > 0.9 * len(trades)
    assert all(0 < float(r["size"]) for r in trades)
    btc = [float(r["size"]) for r in trades if r["symbol"] == "BTC-USD"]
    assert min(btc) < 0.01 and max(btc) < 10  # 0.00479 BTC, not 479 units
    for r in rows:
        spec = feed[r["symbol"]]
        assert all(_on_grid(r[c], spec["tick_size"]) for c in ("bid", "ask")), r
        assert float(r["bid"]) < float(r["ask"]), r
        if r["kind"] == "trade":
            assert _on_grid(r["price"], spec["tick_size"]) and _on_grid(r["size"], spec["lot_size"]), r


def test_crypto_trade_ids_are_unique_and_twin_fills_differ_only_by_them(crypto):
    _, rows = _rows(crypto)
    trades = [r for r in rows if r["kind"] == "trade"]
    ids = [int(r["trade_id"]) for r in trades]
    assert ids == sorted(set(ids))  # unique, rising in feed order
    twins = [(a, b) for a, b in zip(trades, trades[1:])
             if [a[c] for c in ("timestamp", "symbol", "price", "size", "side")]
             == [b[c] for c in ("timestamp", "symbol", "price", "size", "side")]]
    assert twins and all(a["trade_id"] != b["trade_id"] for a, b in twins)  # distinct fills, not duplicates


def test_crypto_trades_around_the_clock_on_a_utc_microsecond_clock(crypto):
    _, rows = _rows(crypto)
    assert all(re.fullmatch(r"2024-03-11T\d\d:\d\d:\d\d\.\d{6}Z", r["timestamp"]) for r in rows)
    hours = {int(r["timestamp"][11:13]) for r in rows if r["kind"] == "trade"}
    assert hours == set(range(24))
    stamps = [_utc_ns(r["timestamp"]) for r in rows]
    assert stamps == sorted(stamps)  # feed order


def test_stale_crypto_quotes_freeze_while_the_trades_drift_outside_them():
    data = tick_generator.PROFILES["crypto"].csv(DAY, ticks_per_day=6000, seed=3, stale_quotes_after=90)
    _, rows = _rows(data)
    stale = ticks.partition_bounds(DAY)[0] + 90 * 60 * 10**9
    quotes = [r for r in rows if r["kind"] == "quote"]
    trades = [r for r in rows if r["kind"] == "trade"]
    assert quotes and max(_utc_ns(r["timestamp"]) for r in quotes) < stale  # no quote after 01:30
    late = [r for r in trades if _utc_ns(r["timestamp"]) >= stale]
    assert len(late) > 0.9 * len(trades) and max(r["timestamp"] for r in late) >= "2024-03-11T23"
    last_quote = {r["symbol"]: (r["bid"], r["ask"]) for r in quotes}
    assert all((r["bid"], r["ask"]) == last_quote[r["symbol"]] for r in late)  # frozen
    early = [r for r in trades if _utc_ns(r["timestamp"]) < stale]

    def outside(r):
        return not float(r["bid"]) <= float(r["price"]) <= float(r["ask"])

    assert not any(outside(r) for r in early)
    assert sum(outside(r) for r in late) > 0.5 * len(late)  # what the quality gate must catch
    # the same records as the fresh feed but for the missing quote updates
    _, fresh = _rows(tick_generator.PROFILES["crypto"].csv(DAY, ticks_per_day=6000, seed=3))
    assert len(trades) == sum(r["kind"] == "trade" for r in fresh)


def test_only_crypto_takes_stale_quotes():
    with pytest.raises(ValueError, match="the fx-quotes profile takes no stale_quotes_after .only crypto"):
        tick_generator.PROFILES["fx-quotes"].csv(DAY, ticks_per_day=100, stale_quotes_after=5)


# --------------------------------------------------------------------------------------------------------
# fx-quotes: quote-only sessions on a New York clock without an offset


def test_fx_quotes_are_quote_only_on_a_pip_grid(fx):
    header, rows = _rows(fx)
    assert header == ["timestamp", "symbol", "bid", "ask"]  # no price, size or side
    assert len(rows) == 4000 and {r["symbol"] for r in rows} == set(tick_generator.FX_SYMBOLS)
    decimals = {"EURUSD": 5, "GBPUSD": 5, "AUDUSD": 5, "USDJPY": 3}
    feed = tick_generator.PROFILES["fx-quotes"].feed()["symbols"]
    assert {s: spec["tick_size"] for s, spec in feed.items()} == {s: 10.0**-d for s, d in decimals.items()}
    for r in rows:
        assert float(r["bid"]) < float(r["ask"]), r
        assert all(_on_grid(r[c], feed[r["symbol"]]["tick_size"]) for c in ("bid", "ask")), r
        assert len(r["ask"].partition(".")[2]) <= decimals[r["symbol"]]
    assert any(len(r["bid"].partition(".")[2]) == 5 for r in rows if r["symbol"] == "EURUSD")
    eurusd = [float(r["bid"]) for r in rows if r["symbol"] == "EURUSD"]
    assert 0.9 < min(eurusd) and max(eurusd) < 1.3


def test_fx_clock_is_new_york_wall_time_without_an_offset_and_the_session_spans_utc_midnight(fx):
    _, rows = _rows(fx)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", r["timestamp"]) for r in rows)
    assert rows[0]["timestamp"] >= "2024-03-10 17:00" and rows[-1]["timestamp"] < "2024-03-11 17:00"
    start, end = ticks.partition_bounds("2024-03-11", FX_SESSION)
    stamps = [_utc_ns(r["timestamp"], NY) for r in rows]
    assert stamps == sorted(stamps) and start <= stamps[0] and stamps[-1] < end
    utc_days = {datetime.fromtimestamp(ns / 1e9, timezone.utc).date() for ns in stamps}
    assert utc_days == {date(2024, 3, 10), date(2024, 3, 11)}  # one session, across UTC midnight


@pytest.mark.parametrize("partition, utc_start, utc_end", [
    ("2024-03-08", "2024-03-07T22:00:00+00:00", "2024-03-08T22:00:00+00:00"),  # EST: 17:00 = 22:00 UTC
    ("2024-03-11", "2024-03-10T21:00:00+00:00", "2024-03-11T21:00:00+00:00"),  # EDT from 10 March: 21:00 UTC
    ("2024-11-01", "2024-10-31T21:00:00+00:00", "2024-11-01T21:00:00+00:00"),
    ("2024-11-04", "2024-11-03T22:00:00+00:00", "2024-11-04T22:00:00+00:00"),  # EST again from 3 November
])
def test_fx_sessions_follow_new_york_dst(partition, utc_start, utc_end):
    start, end = ticks.partition_bounds(partition, FX_SESSION)
    assert (start, end) == (_utc_ns(utc_start), _utc_ns(utc_end))
    _, rows = _rows(tick_generator.PROFILES["fx-quotes"].csv(date.fromisoformat(partition), ticks_per_day=2000))
    stamps = [_utc_ns(r["timestamp"], NY) for r in rows]
    assert start <= min(stamps) and max(stamps) < end
    assert min(stamps) < start + 3600 * 10**9 and max(stamps) > end - 3600 * 10**9  # the whole session


def test_fx_weekends_are_closed(tmp_path):
    folders = samples.ticks(str(tmp_path), start=date(2024, 3, 8), days=4, ticks_per_day=500, profile="fx-quotes")
    assert [f.rsplit("/", 1)[1] for f in folders] == ["date=2024-03-08", "date=2024-03-11"]  # Friday, Monday
    with pytest.raises(ValueError, match="2024-03-09 .Saturday. is closed"):
        tick_generator.fx_csv(date(2024, 3, 9), ticks_per_day=500)


# --------------------------------------------------------------------------------------------------------
# every profile: determinism, custom symbols, feed settings


@pytest.mark.parametrize("name", list(tick_generator.PROFILES))
def test_each_profile_is_deterministic_per_seed(name, tmp_path):
    profile = tick_generator.PROFILES[name]
    first = profile.csv(DAY, ticks_per_day=1500, seed=7)
    assert profile.csv(DAY, ticks_per_day=1500, seed=7) == first
    assert profile.csv(DAY, ticks_per_day=1500, seed=8) != first
    for attempt in ("a", "b"):
        samples.ticks(str(tmp_path / attempt), start=DAY, days=2, ticks_per_day=1500, seed=7, profile=name)
    assert (tmp_path / "a" / "date=2024-03-11" / "ticks.csv").read_bytes() == first
    assert ((tmp_path / "a" / "date=2024-03-12" / "ticks.csv").read_bytes()
            == (tmp_path / "b" / "date=2024-03-12" / "ticks.csv").read_bytes())


@pytest.mark.parametrize("name, symbols", [("equities", ["AAA", "BBB"]), ("crypto", ["BTC-USD", "DOGE-USD"]),
                                           ("fx-quotes", ["EURUSD", "EURJPY"])])
def test_a_profile_takes_other_symbols_and_states_their_grids(name, symbols):
    profile = tick_generator.PROFILES[name]
    _, rows = _rows(profile.csv(DAY, symbols, ticks_per_day=800))
    assert {r["symbol"] for r in rows} == set(symbols)
    feed = config.TickFeed.model_validate(profile.feed(symbols))
    assert feed.symbol_names == symbols
    for r in rows:
        assert _on_grid(r["bid"], feed.symbols[r["symbol"]].tick_size), r
    if name == "fx-quotes":
        assert feed.symbols["EURJPY"].tick_size == 0.001


def test_each_profile_states_the_feed_settings_it_needs():
    feeds = {name: profile.feed() for name, profile in tick_generator.PROFILES.items()}
    assert config.TickFeed.model_validate(feeds["equities"]) == config.feed("ticks")  # the repo's settings
    crypto = config.TickFeed.model_validate(feeds["crypto"])
    assert crypto.source_timezone is None and crypto.session is None
    assert all(spec.lot_size is not None and spec.lot_size < 1 for spec in crypto.symbols.values())
    fx = config.TickFeed.model_validate(feeds["fx-quotes"])
    assert fx.source_timezone == NY and (fx.session.cut, fx.session.zone) == FX_SESSION
    assert all(spec.lot_size is None for spec in fx.symbols.values())  # quotes have no size
    assert fx.partition_bounds("2024-03-11") == ticks.partition_bounds("2024-03-11", FX_SESSION)
    for settings in feeds.values():  # the printed YAML reads back as the same settings
        printed = yaml.safe_load(tick_generator.feed_yaml(settings))["feeds"]["ticks"]
        assert config.TickFeed.model_validate(printed) == config.TickFeed.model_validate(settings)


def test_feed_advice_names_what_differs_from_configs_feeds_yaml(edit_config):
    assert samples.tick_feed_advice("equities") is None
    advice = samples.tick_feed_advice("fx-quotes")
    assert "(symbols, source_timezone, session, closed_weekdays)" in advice and "feeds.yaml" in advice
    other = samples.tick_feed_advice("equities", ["AAPL", "TSLA"])
    assert "(symbols);" in other and "TSLA: {tick_size: 0.01, lot_size: 1}" in other and "MSFT" not in other

    def use_fx(raw):
        raw["feeds"]["ticks"] = tick_generator.PROFILES["fx-quotes"].feed()

    edit_config("feeds", use_fx)
    assert samples.tick_feed_advice("fx-quotes") is None
    assert "(symbols, source_timezone, session, closed_weekdays)" in samples.tick_feed_advice("equities")


def test_unusual_symbol_names_are_quoted_in_the_printed_yaml():
    settings = tick_generator.PROFILES["equities"].feed(["ON", "1234", "BRK.B"])
    printed = yaml.safe_load(tick_generator.feed_yaml(settings))["feeds"]["ticks"]
    assert list(printed["symbols"]) == ["ON", "1234", "BRK.B"]


# --------------------------------------------------------------------------------------------------------
# through the reader: every profile's files normalise to the curated schema v2


def _normalised(name: str, day: date = DAY, **options):
    profile = tick_generator.PROFILES[name]
    data = profile.csv(day, ticks_per_day=3000, seed=4, **options)
    table = tick_reader.normalize_partition([("ticks.csv", data)], day.isoformat(),
                                            source_timezone=profile.source_timezone)
    assert table.schema == ticks.SCHEMA
    return _rows(data)[1], table.to_pandas()


def test_equities_files_normalise_to_v2_trades():
    rows, frame = _normalised("equities")
    assert len(frame) == len(rows) == 3000 and set(frame["kind"]) == {"trade"}
    assert sorted(frame["size"]) == sorted(float(r["size"]) for r in rows)
    assert (frame["size"] == frame["size"].round()).all() and frame["size"].min() >= 1
    assert frame["trade_id"].isna().all() and frame["venue"].isna().all()
    assert sorted(frame["timestamp"].astype("int64")) == sorted(_utc_ns(r["timestamp"]) for r in rows)


@pytest.mark.parametrize("stale", [None, 90])
def test_crypto_files_normalise_to_v2_trades_and_quotes(stale):
    rows, frame = _normalised("crypto", stale_quotes_after=stale)
    assert len(frame) == len(rows)
    assert frame["kind"].value_counts().to_dict() == Counter(r["kind"] for r in rows)
    quotes, trades = frame[frame["kind"] == "quote"], frame[frame["kind"] == "trade"]
    assert quotes[["price", "size", "side", "trade_id", "venue"]].isna().all().all()
    assert trades[["price", "size", "side", "trade_id", "venue"]].notna().all().all()
    sizes = {r["trade_id"]: float(r["size"]) for r in rows if r["kind"] == "trade"}
    assert dict(zip(trades["trade_id"], trades["size"])) == sizes  # fractional sizes kept exactly
    assert (trades["size"] % 1 != 0).mean() > 0.9 and trades["trade_id"].is_unique
    assert set(trades["venue"]) == {"coinbase", "kraken", "bitstamp"}
    assert sorted(frame["timestamp"].astype("int64")) == sorted(_utc_ns(r["timestamp"]) for r in rows)
    outside = ((trades["price"] < trades["bid"]) | (trades["price"] > trades["ask"])).mean()
    assert (outside > 0.5) if stale else (outside == 0)


@pytest.mark.parametrize("partition", ["2024-03-08", "2024-03-11", "2024-11-04"])
def test_fx_files_normalise_to_v2_quotes_in_utc_within_their_session(partition):
    rows, frame = _normalised("fx-quotes", date.fromisoformat(partition))
    assert len(frame) == len(rows) and set(frame["kind"]) == {"quote"}
    assert frame[["price", "size", "side", "trade_id", "venue"]].isna().all().all()
    stamps = frame["timestamp"].astype("int64")
    assert sorted(stamps) == sorted(_utc_ns(r["timestamp"], NY) for r in rows)  # New York wall time, to UTC
    start, end = ticks.partition_bounds(partition, FX_SESSION)
    assert start <= stamps.min() and stamps.max() < end
    day = date.fromisoformat(partition)
    assert {t.date() for t in frame["timestamp"]} == {day - timedelta(days=1), day}  # across UTC midnight


def test_fx_files_need_their_source_timezone():
    data = tick_generator.PROFILES["fx-quotes"].csv(DAY, ticks_per_day=200)
    with pytest.raises(DataFormatError):
        tick_reader.normalize_partition([("ticks.csv", data)], DAY.isoformat())


# --------------------------------------------------------------------------------------------------------
# the CLI


def test_the_cli_writes_a_profile_and_prints_the_feed_settings_it_needs(tmp_path, config_dir):
    out = _cli("--profile", "crypto", "--start", "2024-03-11", "--days", "2", "--ticks-per-day", "600",
               "--stale-quotes-after", "30", "-o", str(tmp_path / "c"))
    assert out.returncode == 0, out.stderr
    assert "wrote 2 crypto tick partitions" in out.stdout and "retrain land ticks" in out.stdout
    assert (tmp_path / "c" / "date=2024-03-12" / "ticks.csv").read_bytes() == tick_generator.PROFILES["crypto"].csv(
        date(2024, 3, 12), ticks_per_day=600, seed=1, stale_quotes_after=30)
    assert "differ from" in out.stdout and "(symbols)" in out.stdout
    printed = yaml.safe_load(out.stdout[out.stdout.index("feeds:"):])["feeds"]["ticks"]
    assert printed == yaml.safe_load(tick_generator.feed_yaml(tick_generator.PROFILES["crypto"].feed()))["feeds"]["ticks"]

    out = _cli("--start", "2024-03-11", "--ticks-per-day", "600", "-o", str(tmp_path / "e"))  # equities: as configured
    assert out.returncode == 0 and "feeds:" not in out.stdout

    out = _cli("--profile", "fx-quotes", "--start", "2024-03-09", "--days", "2", "--ticks-per-day", "600",
               "--symbols", "EURUSD,USDJPY", "-o", str(tmp_path / "f"))
    assert out.returncode == 0, out.stderr
    assert "wrote 0 fx-quotes tick partitions" in out.stdout and "none for the 2 days the market is closed" in out.stdout
    assert "source_timezone: America/New_York" in out.stdout and "session: {cut: '17:00', zone: America/New_York}" \
        in out.stdout and "USDJPY: {tick_size: 0.001}" in out.stdout and "GBPUSD" not in out.stdout


def test_the_cli_refuses_stale_quotes_without_quotes_to_freeze_and_unknown_profiles(tmp_path):
    out = _cli("--profile", "equities", "--stale-quotes-after", "5", "--start", "2024-03-11", "-o", str(tmp_path))
    assert out.returncode == 2 and "the equities profile takes no stale_quotes_after (only crypto)" in out.stderr
    assert not list(tmp_path.iterdir())
    out = _cli("--profile", "options", "--start", "2024-03-11", "-o", str(tmp_path))
    assert out.returncode == 2 and "invalid choice: 'options'" in out.stderr


def test_the_cli_offers_every_profile():
    from retrain import cli

    assert cli.TICK_PROFILES == tuple(tick_generator.PROFILES)
