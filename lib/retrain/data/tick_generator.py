"""Sample tick days in the raw format: realistic trades with quotes, in feed order, and their CSV bytes.

Order flow drives the next minute's mid-price drift, which makes one-minute direction modestly predictable:
what the tick model can learn. Used by ``retrain sample-data ticks``, the demo and the tests.

:data:`PROFILES` are the shapes real feeds deliver (``equities``, today's; ``crypto``, trades with fractional
sizes and trade ids among quote rows, whose quotes can go stale; ``fx-quotes``, quote-only sessions on a local
clock), each with the ``configs/feeds.yaml`` settings its files need.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from retrain.data.ticks import (DEFAULT_SYMBOLS, HEADER, NS_PER_DAY, RAW_COLUMNS, SCHEMA_V1, SIDES, TICK_SIZE,
                                WEEKDAYS, nanoseconds, upgrade)


# Price levels of well-known tickers; any other symbol gets a level from its name.
_LEVELS = {"AAPL": 190.0, "MSFT": 410.0, "GOOG": 140.0, "AMZN": 180.0, "NVDA": 120.0, "META": 500.0,
           "TSLA": 250.0, "SPY": 520.0, "QQQ": 440.0, "IBM": 170.0}
# Order flow drives the next minute's mid-price drift: what makes one-minute direction modestly predictable.
_FLOW_PERSISTENCE = 0.6   # AR(1) coefficient of the per-minute order-flow state
_FLOW_TO_BUYS = 1.2       # logit of the buy probability per unit of flow
_FLOW_TO_DRIFT = 0.3      # next-minute drift, in units of that minute's volatility, per unit of flow
_IMPACT = 0.3             # a minute of one-sided trading moves the mid this many minute volatilities


def _symbol_key(symbol: str) -> int:
    return zlib.crc32(symbol.encode("utf-8"))


def _level(symbol: str) -> float:
    return _LEVELS.get(symbol, 20.0 + (_symbol_key(symbol) % 48_000) / 100.0)


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integer parts proportional to ``weights`` (largest remainders), each at least 1."""
    share = weights / weights.sum() * (total - len(weights))
    counts = np.floor(share).astype(np.int64)
    remainder = total - len(weights) - counts.sum()
    counts[np.argsort(-(share - counts), kind="stable")[:remainder]] += 1
    return counts + 1


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    from scipy.signal import lfilter

    return lfilter([1.0], [1.0, -phi], rng.normal(0.0, np.sqrt(1.0 - phi * phi), n))


def _order_flow(rng: np.random.Generator, n: int, level: float, open_ns: int, season: np.ndarray,
                volatility: tuple[float, float] = (0.012, 0.01)) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` ticks from ``open_ns`` over ``len(season)`` minutes, as busy as ``season`` says, with a few bursts:
    their times (strictly increasing nanoseconds), minutes, sides (True: buyer-initiated) and mid prices (a
    random walk from ``level`` that persistent order flow pushes its way; daily volatility drawn from
    ``volatility`` = (lowest, range))."""
    minutes = len(season)
    intensity = season * rng.gamma(8.0, 1.0 / 8.0, minutes)
    bursts = rng.choice(minutes, size=min(minutes, 1 + rng.poisson(3)), replace=False)
    intensity[bursts] *= 6.0
    per_minute = rng.multinomial(n, intensity / intensity.sum())
    minute = np.repeat(np.arange(minutes), per_minute)

    # offsets inside the minute; in a burst minute most ticks land within a second or two of one instant
    offset = rng.random(n) * 60e9
    burst_minute = np.zeros(minutes, dtype=bool)
    burst_minute[bursts] = True
    in_burst = burst_minute[minute] & (rng.random(n) < 0.8)
    centre = rng.random(minutes) * 55e9
    offset[in_burst] = np.minimum(centre[minute[in_burst]] + np.abs(rng.normal(0.0, 1e9, in_burst.sum())), 60e9 - 1)
    stamps = open_ns + minute * 60 * 10**9 + offset.astype(np.int64)
    order = np.argsort(stamps, kind="stable")
    stamps, minute = stamps[order], minute[order]
    stamps = np.maximum.accumulate(stamps - np.arange(n)) + np.arange(n)  # strictly increasing, at ns resolution

    flow = _ar1(rng, minutes, _FLOW_PERSISTENCE)
    buy = rng.random(n) < 1.0 / (1.0 + np.exp(-_FLOW_TO_BUYS * flow[minute]))
    sign = np.where(buy, 1.0, -1.0)

    daily_vol = volatility[0] + volatility[1] * rng.random()
    minute_vol = daily_vol / np.sqrt(minutes) * np.sqrt(season / season.mean())
    previous_flow = np.concatenate([[0.0], flow[:-1]])
    dt = np.diff(stamps, prepend=open_ns) / 60e9  # minutes since the previous tick
    ticks_per_minute = max(n / minutes, 1.0)
    sigma = minute_vol[minute]
    step = (_FLOW_TO_DRIFT * previous_flow[minute] * sigma * dt
            + sigma * np.sqrt(dt) * rng.standard_normal(n)
            + _IMPACT * sigma * sign / ticks_per_minute)
    return stamps, minute, buy, level * np.exp(np.cumsum(step))


def _touch(rng: np.random.Generator, mid: np.ndarray, level: float, tick: float, relative_spread: float,
           busy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bid and ask around ``mid``, in whole ticks of ``tick``: a spread of a few ticks (``relative_spread`` of the
    price level, at least one tick), a little wider where ``busy`` (0..1) is high."""
    n = len(mid)
    base = max(1, int(round(level * relative_spread / tick)))
    spread = base + np.minimum(rng.geometric(0.55, n) - 1, 5) + (rng.random(n) < 0.1 * busy)
    bid_ticks = np.maximum(np.round(mid / tick - spread / 2.0).astype(np.int64), 1)
    return bid_ticks, bid_ticks + spread


def _symbol_ticks(rng: np.random.Generator, n: int, level: float, open_ns: int, minutes: int) -> dict:
    u = (np.arange(minutes) + 0.5) / minutes
    season = 1.0 + 3.0 * (2.0 * u - 1.0) ** 2  # U-shape: 4x the midday activity at the open and the close
    stamps, minute, buy, mid = _order_flow(rng, n, level, open_ns, season)
    # quotes on the cent grid, wider for pricier names and when it is busy
    bid_ticks, ask_ticks = _touch(rng, mid, level, TICK_SIZE, 0.4e-4, season[minute] / 4.0)
    size = np.where(rng.random(n) < 0.55, rng.integers(1, 100, n), 100 * rng.geometric(0.45, n))
    return {
        "timestamp": stamps,
        "price": np.where(buy, ask_ticks, bid_ticks) / 100.0,
        "size": size.astype(np.int64),
        "buy": buy,
        "bid": bid_ticks / 100.0,
        "ask": ask_ticks / 100.0,
    }


def generate_ticks(
    day: date,
    symbols: list[str] | tuple[str, ...] = DEFAULT_SYMBOLS,
    ticks_per_day: int = 1_000_000,
    seed: int = 0,
    *,
    session: tuple[time, time] = (time(13, 30), time(20, 0)),
) -> pa.Table:
    """A day of realistic trades with quotes, in feed order (by timestamp), in the curated :data:`SCHEMA` (v2;
    every row a trade with a whole size, no trade id or venue: what the reader makes of the v1 raw shape).

    ``ticks_per_day`` ticks in all, shared unevenly between ``symbols`` (each gets at least one), inside
    ``session`` (UTC; the default is the NYSE session in summer time). Each symbol has its own price level;
    the mid price is a random walk whose volatility and tick rate follow a U-shape over the session (busiest
    at the open and the close), with a few bursts of ticks. Order flow is persistent from minute to minute
    and pushes the next minute's mid price its way, so recent buy/sell imbalance predicts the next minute's
    direction a little. Trades print at the bid (sells) or the ask (buys); bid < ask by a few cents.
    Timestamps are strictly increasing per symbol. The same arguments always give the same table.
    """
    symbols = list(symbols)
    if not symbols or len(set(symbols)) != len(symbols):
        raise ValueError(f"symbols must be a non-empty list of distinct names, got {symbols}")
    if ticks_per_day < len(symbols):
        raise ValueError(f"ticks_per_day must be at least one per symbol ({len(symbols)}), got {ticks_per_day}")
    start, end = session
    minutes = (end.hour * 60 + end.minute) - (start.hour * 60 + start.minute)
    if minutes < 1:
        raise ValueError(f"session must end after it starts, got {start}-{end}")
    day_ns = int(datetime.combine(day, time(0), tzinfo=timezone.utc).timestamp()) * 10**9
    open_ns = day_ns + (start.hour * 3600 + start.minute * 60) * 10**9

    activity = np.array([0.6 + 0.8 * ((_symbol_key(s) >> 8) % 1000) / 1000.0 for s in symbols])
    counts = _allocate(ticks_per_day, activity)
    parts = []
    for symbol, n in zip(symbols, counts):
        rng = np.random.default_rng([seed, day.toordinal(), _symbol_key(symbol)])
        level = _level(symbol) * float(np.exp(0.02 * rng.standard_normal()))
        parts.append(_symbol_ticks(rng, int(n), level, open_ns, minutes))

    stamps = np.concatenate([p["timestamp"] for p in parts])
    order = np.argsort(stamps, kind="stable")  # feed order; symbols in list order on equal timestamps

    def column(key: str) -> np.ndarray:
        return np.concatenate([p[key] for p in parts])[order]

    names = sorted(symbols)
    code_of = {s: i for i, s in enumerate(names)}
    codes = np.concatenate([np.full(len(p["timestamp"]), code_of[s], np.int32) for p, s in zip(parts, symbols)])[order]
    side_codes = np.where(column("buy"), 0, 1).astype(np.int32)
    return upgrade(pa.Table.from_arrays(
        [
            pa.array(stamps[order], pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(names, pa.string())),
            pa.array(column("price")),
            pa.array(column("size")),
            pa.DictionaryArray.from_arrays(pa.array(side_codes), pa.array(list(SIDES), pa.string())),
            pa.array(column("bid")),
            pa.array(column("ask")),
        ],
        schema=SCHEMA_V1,
    ))


def _iso_text(nanoseconds: np.ndarray, *, digits: int = 9, separator: str = "T", suffix: str = "Z") -> pa.Array:
    """``YYYY-MM-DDTHH:MM:SS.fffffffffZ`` for epoch nanoseconds (``digits`` of the second, 1 to 9; another
    ``separator`` or ``suffix``, e.g. ``" "`` and ``""`` for a wall clock without an offset), digit by digit in
    numpy (Arrow's strftime is several times slower on millions of rows)."""
    n = len(nanoseconds)
    width = 20 + digits + len(suffix)
    days, within = np.divmod(nanoseconds, NS_PER_DAY)
    text = np.empty((n, width), dtype=np.uint8)
    unique_days, day_index = np.unique(days, return_inverse=True)
    dates = np.array([list(str(np.datetime64(int(d), "D")).encode()) for d in unique_days], dtype=np.uint8)
    text[:, :10] = dates.reshape(-1, 10)[day_index]
    seconds, fraction = np.divmod(within, 10**9)
    hours, rest = np.divmod(seconds, 3600)
    minutes, secs = np.divmod(rest, 60)
    fraction = fraction // 10 ** (9 - digits)
    for start, value, places in ((11, hours, 2), (14, minutes, 2), (17, secs, 2), (20, fraction, digits)):
        for position in range(start + places - 1, start - 1, -1):
            value, digit = np.divmod(value, 10)
            text[:, position] = digit + ord("0")
    for position, char in ((10, separator), (13, ":"), (16, ":"), (19, "."), *enumerate(suffix, 20 + digits)):
        text[:, position] = ord(char)
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(text)])
    return fixed.cast(pa.binary()).cast(pa.string())


def _iso_utc(nanoseconds: np.ndarray) -> pa.Array:
    """``YYYY-MM-DDTHH:MM:SS.fffffffffZ`` for epoch nanoseconds."""
    return _iso_text(nanoseconds)


def to_csv_bytes(table: pa.Table) -> bytes:
    """A tick table as a raw CSV file: header, ISO-8601 timestamps with a ``Z`` (nanoseconds), no quoting."""
    text = _iso_utc(nanoseconds(table))
    out = pa.Table.from_arrays(
        [text, table["symbol"].cast(pa.string()), table["price"], table["size"], table["side"].cast(pa.string()),
         table["bid"], table["ask"]],
        names=RAW_COLUMNS,
    )
    buffer = io.BytesIO()
    buffer.write(HEADER.encode() + b"\n")
    pacsv.write_csv(out, buffer, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none",
                                                                  batch_size=1 << 16))
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------
# profiles: the shapes real feeds deliver, as raw CSV bytes, each with the feed settings it needs

CRYPTO_SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
FX_SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "AUDUSD")
FX_SESSION = ("17:00", "America/New_York")  # FX days end at 17:00 New York
# (price level, tick size, lot size) of well-known coins; another pair gets (a level from its name, 0.01, 0.0001)
_COINS = {"BTC-USD": (43_000.0, 0.1, 0.00001), "ETH-USD": (2_300.0, 0.01, 0.0001), "SOL-USD": (100.0, 0.001, 0.01)}
_PAIRS = {"EURUSD": 1.095, "GBPUSD": 1.27, "USDJPY": 143.5, "AUDUSD": 0.665, "USDCHF": 0.86, "USDCAD": 1.33}
_VENUES = ("coinbase", "kraken", "bitstamp")
_QUOTE_SHARE = 0.65   # of crypto records: the rest are trades
_TWIN_FILLS = 0.04    # of crypto trades: a second fill of one order, same instant, price, size and side
_MEDIAN_NOTIONAL = 800.0  # USD of a median crypto trade


def _decimals(step: float) -> int:
    from decimal import Decimal

    return max(0, -Decimal(repr(step)).normalize().as_tuple().exponent)


def _on_grid(steps: np.ndarray, step: float) -> np.ndarray:
    """Whole multiples of ``step`` as the decimals a vendor prints (``0.132``, not ``0.13200000000000001``)."""
    return np.round(steps * step, _decimals(step))


def _checked(symbols, ticks_per_day: int) -> list[str]:
    symbols = list(symbols)
    if not symbols or len(set(symbols)) != len(symbols):
        raise ValueError(f"symbols must be a non-empty list of distinct names, got {symbols}")
    if ticks_per_day < len(symbols):
        raise ValueError(f"ticks_per_day must be at least one per symbol ({len(symbols)}), got {ticks_per_day}")
    return symbols


def _per_symbol(symbols: list[str], ticks_per_day: int, seed: int, day: date):
    """Each symbol with its share of the day's records and its own random stream (as :func:`generate_ticks`)."""
    activity = np.array([0.6 + 0.8 * ((_symbol_key(s) >> 8) % 1000) / 1000.0 for s in symbols])
    for symbol, n in zip(symbols, _allocate(ticks_per_day, activity)):
        yield symbol, int(n), np.random.default_rng([seed, day.toordinal(), _symbol_key(symbol)])


def _csv_bytes(columns: dict[str, pa.Array]) -> bytes:
    """Columns as a raw CSV file: a header, no quoting, an empty field for a null."""
    buffer = io.BytesIO()
    buffer.write(",".join(columns).encode() + b"\n")
    pacsv.write_csv(pa.table(columns), buffer,
                    write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return buffer.getvalue()


def _feed_order(parts: list[dict]) -> dict[str, np.ndarray]:
    """The symbols' records merged by time (symbols in list order on equal timestamps)."""
    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    order = np.argsort(merged["timestamp"], kind="stable")
    return {key: values[order] for key, values in merged.items()}


def crypto_instrument(symbol: str) -> dict:
    """A coin pair's grids (``tick_size`` of its prices, ``lot_size`` of its quantities)."""
    _, tick, lot = _COINS.get(symbol, (None, 0.01, 0.0001))
    return {"tick_size": tick, "lot_size": lot}


def crypto_csv(day: date, symbols=CRYPTO_SYMBOLS, ticks_per_day: int = 200_000, seed: int = 0, *,
               stale_quotes_after: float | None = None) -> bytes:
    """A UTC day of a crypto venue feed, raw CSV: trades and quotes interleaved around the clock.

    Columns ``timestamp,symbol,kind,price,size,side,bid,ask,trade_id,venue``; microsecond UTC timestamps with a
    ``Z``. A ``quote`` row is a new best bid and offer (price, size, side, trade id and venue empty); a
    ``trade`` row prints at the prevailing ask (buys) or bid (sells), which it carries, with a fractional size
    on the symbol's lot grid, a trade id (unique, rising in feed order) and its venue. A few orders fill twice
    at the same instant, price, size and side (two trade ids). ``stale_quotes_after`` minutes: the quotes stop
    updating that long after midnight while the trades go on, still carrying the frozen bid and ask, so the
    trades drift outside them. ``ticks_per_day`` records (fewer with stale quotes: the missing updates).
    """
    symbols = _checked(symbols, ticks_per_day)
    if stale_quotes_after is not None and not stale_quotes_after >= 0:
        raise ValueError(f"stale_quotes_after must be minutes >= 0, got {stale_quotes_after}")
    open_ns = int(datetime.combine(day, time(0), tzinfo=timezone.utc).timestamp()) * 10**9
    hours = (np.arange(1440) + 0.5) / 60.0
    season = 1.0 + 0.5 * np.cos(2.0 * np.pi * (hours - 15.0) / 24.0)  # busiest in the US afternoon
    stale_ns = np.inf if stale_quotes_after is None else open_ns + stale_quotes_after * 60e9
    parts = []
    for symbol, n, rng in _per_symbol(symbols, ticks_per_day, seed, day):
        fallback, tick, lot = _COINS.get(symbol, (_level(symbol), 0.01, 0.0001))
        level = fallback * float(np.exp(0.05 * rng.standard_normal()))
        stamps, minute, buy, mid = _order_flow(rng, n, level, open_ns, season, volatility=(0.02, 0.03))
        bid, ask = _touch(rng, mid, level, tick, 1e-5, season[minute] / 1.5)
        stamps = stamps // 1000 * 1000  # the venue's clock counts microseconds
        quote = rng.random(n) < _QUOTE_SHARE
        quote[0] = True  # a symbol's day starts with its quote
        live = stamps >= stale_ns  # past the stale point: the market moves on, the published quote does not
        published = quote & ~live
        published[0] = True
        last = np.maximum.accumulate(np.where(published, np.arange(n), 0))
        touch_bid, touch_ask = np.where(live, bid, bid[last]), np.where(live, ask, ask[last])
        lots = np.maximum(1, np.round(rng.lognormal(np.log(_MEDIAN_NOTIONAL / level), 1.4, n) / lot))
        venue = rng.choice(len(_VENUES), n, p=[0.6, 0.3, 0.1])
        record = {"timestamp": stamps, "quote": quote, "buy": buy, "price": np.where(buy, touch_ask, touch_bid),
                  "lots": lots, "venue": venue}
        twin = np.flatnonzero(~quote[1:] & ~quote[:-1] & (rng.random(n - 1) < _TWIN_FILLS)) + 1
        for key in ("timestamp", "buy", "price", "lots", "venue"):
            record[key][twin] = record[key][twin - 1]
        keep = published | ~quote
        parts.append({**{key: values[keep] for key, values in record.items()},
                      "bid": _on_grid(bid[last][keep], tick), "ask": _on_grid(ask[last][keep], tick),
                      "price": _on_grid(record["price"][keep], tick), "size": _on_grid(record["lots"][keep], lot),
                      "symbol": np.full(keep.sum(), symbols.index(symbol))})

    rows = _feed_order(parts)
    quote = rows["quote"]
    trade_ids = day.toordinal() * 10**8 + np.cumsum(~quote)  # a venue-wide sequence, rising across days
    return _csv_bytes({
        "timestamp": _iso_text(rows["timestamp"], digits=6),
        "symbol": pa.array(np.array(symbols, dtype=object)[rows["symbol"]], pa.string()),
        "kind": pa.array(np.where(quote, "quote", "trade"), pa.string()),
        "price": pa.array(rows["price"], mask=quote),
        "size": pa.array(rows["size"], mask=quote),
        "side": pa.array(np.where(rows["buy"], "B", "S"), pa.string(), mask=quote),
        "bid": pa.array(rows["bid"]),
        "ask": pa.array(rows["ask"]),
        "trade_id": pa.array(trade_ids, mask=quote).cast(pa.string()),
        "venue": pa.array(np.array(_VENUES, dtype=object)[rows["venue"]], pa.string(), mask=quote),
    })


def fx_instrument(symbol: str) -> dict:
    """A currency pair's price grid: a tenth of a pip (0.001 for yen pairs, else 0.00001); quotes have no size."""
    return {"tick_size": 0.001 if symbol.endswith("JPY") else 0.00001}


# FX trades from Sunday 17:00 to Friday 17:00 New York: the sessions ending on Saturday and Sunday are closed
# (and so never meet the hour a DST change repeats, which a clock without an offset cannot name)
FX_CLOSED = ("Sat", "Sun")


def fx_trades_on(day: date) -> bool:
    return WEEKDAYS[day.weekday()] not in FX_CLOSED


def fx_csv(day: date, symbols=FX_SYMBOLS, ticks_per_day: int = 200_000, seed: int = 0) -> bytes:
    """An FX session of a retail vendor's quotes, raw CSV: partition ``day`` is the session from 17:00 New York
    on the day before to 17:00 on ``day`` (across UTC midnight; DST moves it in UTC, not on the clock).

    Columns ``timestamp,symbol,bid,ask`` (quote-only: no price, size or side); timestamps on the vendor's clock,
    New York wall time WITHOUT an offset, microseconds (``2024-01-02 12:30:00.123456``). Prices on a tenth of
    a pip; busiest in the London morning and the London/New York overlap.
    """
    from retrain.data.ticks import partition_bounds

    symbols = _checked(symbols, ticks_per_day)
    if not fx_trades_on(day):
        raise ValueError(f"the FX session ending on {day} ({day:%A}) is closed: FX trades from Sunday 17:00 to "
                         "Friday 17:00 New York")
    start_ns, end_ns = partition_bounds(day, FX_SESSION)
    minutes = (end_ns - start_ns) // (60 * 10**9)
    hours = ((start_ns // (60 * 10**9) + np.arange(minutes) + 0.5) % 1440) / 60.0  # UTC hour of each minute
    season = 0.3 + 1.5 * np.exp(-(((hours - 8.5) / 2.0) ** 2)) + 2.0 * np.exp(-(((hours - 14.5) / 2.5) ** 2))
    parts = []
    for symbol, n, rng in _per_symbol(symbols, ticks_per_day, seed, day):
        fallback = 0.6 + (_symbol_key(symbol) % 1000) / 1000.0
        level = _PAIRS.get(symbol, fallback * (100.0 if symbol.endswith("JPY") else 1.0))
        level *= float(np.exp(0.01 * rng.standard_normal()))
        tick = fx_instrument(symbol)["tick_size"]
        stamps, minute, _, mid = _order_flow(rng, n, level, start_ns, season, volatility=(0.004, 0.004))
        bid, ask = _touch(rng, mid, level, tick, 5e-5, 1.0 / season[minute])  # wider when it is quiet
        parts.append({"timestamp": stamps // 1000 * 1000, "symbol": np.full(n, symbols.index(symbol)),
                      "bid": _on_grid(bid, tick), "ask": _on_grid(ask, tick)})

    rows = _feed_order(parts)
    utc = pa.array(rows["timestamp"], pa.int64()).cast(pa.timestamp("ns", tz=FX_SESSION[1]))
    wall = np.asarray(pc.local_timestamp(utc).cast(pa.int64()))
    return _csv_bytes({
        "timestamp": _iso_text(wall, digits=6, separator=" ", suffix=""),
        "symbol": pa.array(np.array(symbols, dtype=object)[rows["symbol"]], pa.string()),
        "bid": pa.array(rows["bid"]),
        "ask": pa.array(rows["ask"]),
    })


def equities_csv(day: date, symbols=DEFAULT_SYMBOLS, ticks_per_day: int = 200_000, seed: int = 0) -> bytes:
    """A day of US equity trades with their quotes, raw CSV of schema v1 (:func:`generate_ticks`,
    :func:`to_csv_bytes`): integer sizes, UTC timestamps with a ``Z``."""
    return to_csv_bytes(generate_ticks(day, symbols, ticks_per_day, seed=seed))


@dataclass(frozen=True)
class Profile:
    """A shape of real tick data: how a day of it is made (raw CSV, as the vendor delivers it) and the feed
    settings (``configs/feeds.yaml``, ``feeds.ticks``) the ingest and the gate need to read it."""

    name: str
    summary: str
    symbols: tuple[str, ...]  # the default symbols
    instrument: Callable[[str], dict]  # a symbol's grids, as configs/feeds.yaml states them
    day_csv: Callable[..., bytes]  # (day, symbols, ticks_per_day, seed, **options) -> raw CSV bytes
    source_timezone: str | None = None
    session: tuple[str, str] | None = None  # (cut HH:MM, zone); None: the UTC day
    options: tuple[str, ...] = ()  # the keyword options day_csv takes
    closed: tuple[str, ...] = ()  # the weekdays (WEEKDAYS) whose partition has no data: the market is closed

    def trades_on(self, day: date) -> bool:
        return WEEKDAYS[day.weekday()] not in self.closed

    def feed(self, symbols=None) -> dict:
        """The ``feeds.ticks`` settings this profile's files need, for ``symbols`` (default: the profile's)."""
        return {
            "symbols": {symbol: self.instrument(symbol) for symbol in (symbols or self.symbols)},
            "source_timezone": self.source_timezone,
            "session": None if self.session is None else {"cut": self.session[0], "zone": self.session[1]},
            "closed_weekdays": list(self.closed),
        }

    def check(self, options: dict) -> None:
        """Raise ValueError for an option this profile does not take."""
        for option in sorted(set(options) - set(self.options)):
            takers = [profile.name for profile in PROFILES.values() if option in profile.options]
            raise ValueError(f"the {self.name} profile takes no {option} (only {', '.join(takers) or 'none'})")

    def csv(self, day: date, symbols=None, ticks_per_day: int = 200_000, seed: int = 0, **options) -> bytes:
        """One partition's raw CSV bytes; the same arguments always give the same bytes."""
        self.check(options)
        return self.day_csv(day, tuple(symbols or self.symbols), ticks_per_day, seed, **options)


PROFILES = {profile.name: profile for profile in (
    Profile("equities", "US equity trades with their quotes, integer sizes, UTC timestamps (schema v1 columns)",
            DEFAULT_SYMBOLS, lambda symbol: {"tick_size": TICK_SIZE, "lot_size": 1}, equities_csv),
    Profile("crypto", "24 h of trades (fractional sizes, trade ids, venues) interleaved with quote rows",
            CRYPTO_SYMBOLS, crypto_instrument, crypto_csv, options=("stale_quotes_after",)),
    Profile("fx-quotes", "quote-only FX sessions on a New York clock without an offset, cut at 17:00 New York",
            FX_SYMBOLS, fx_instrument, fx_csv, source_timezone=FX_SESSION[1], session=FX_SESSION,
            closed=FX_CLOSED),
)}


def feed_changes(settings: dict, current) -> list[str]:
    """The keys of the ``feeds.ticks`` ``settings`` that differ from the ``current`` feed (a
    :class:`~retrain.config.TickFeed`; None: none configured, so all of them)."""
    from retrain.config import TickFeed

    wanted = TickFeed.model_validate(settings).model_dump()
    have = {} if current is None else current.model_dump()
    return [key for key in wanted if key not in have or wanted[key] != have[key]]


def feed_yaml(settings: dict) -> str:
    """``feeds.ticks`` settings as the lines of ``configs/feeds.yaml`` (one symbol a line)."""
    import yaml

    return yaml.safe_dump({"feeds": {"ticks": settings}}, sort_keys=False, default_flow_style=None)
