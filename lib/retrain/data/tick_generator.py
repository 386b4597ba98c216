"""Sample tick days in the raw format: realistic trades with quotes, in feed order, and their CSV bytes.

Order flow drives the next minute's mid-price drift, which makes one-minute direction modestly predictable:
what the tick model can learn. Used by ``retrain sample-data ticks``, the demo and the tests.
"""

from __future__ import annotations

import io
import zlib
from datetime import date, datetime, time, timezone

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from retrain.data.ticks import (DEFAULT_SYMBOLS, HEADER, NS_PER_DAY, RAW_COLUMNS, SCHEMA_V1 as SCHEMA, SIDES, TICK_SIZE,
                                nanoseconds)


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
    """A day of realistic trades with quotes, in feed order (by timestamp), in :data:`SCHEMA`.

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
    return pa.Table.from_arrays(
        [
            pa.array(stamps[order], pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(names, pa.string())),
            pa.array(column("price")),
            pa.array(column("size")),
            pa.DictionaryArray.from_arrays(pa.array(side_codes), pa.array(list(SIDES), pa.string())),
            pa.array(column("bid")),
            pa.array(column("ask")),
        ],
        schema=SCHEMA,
    )


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
