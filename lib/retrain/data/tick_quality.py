"""The frame the tick quality gate validates: one curated partition plus derived columns.

``expectations/ticks.json`` holds the rules and their thresholds; this module only derives, per row, the
numbers those rules bound, in a few vectorised numpy passes (a partition can hold millions of ticks). The
feed's settings (``configs/feeds.yaml``, :func:`retrain.config.feed`) say what "right" means per symbol:
its price grid (tick size), its quantity grid (lot size) and where the partition starts and ends.

Rules on trades only (prices, sizes, quote checks) read columns that are null or NaN on quote rows and are
row-level expectations, which skip nulls: a quote-only feed passes them.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrain.data import ticks

# The curated columns the frame keeps (trade_id is read for duplicates, then left out), then the columns added to
# them, in order (``expectations/ticks.json`` lists them too).
KEPT = [column for column in ticks.COLUMNS if column != "trade_id"]
DERIVED = ["spread", "spread_bps", "crossed", "locked", "outside_ticks", "quote_age_s", "off_tick_grid", "off_lot_grid",
           "in_partition", "step_ns", "gap_s", "duplicate", "symbol_ticks"]


def suite_parameters(feed) -> dict:
    """The values ``expectations/ticks.json`` names as ``{"$PARAMETER": ...}``: the feed's symbols."""
    return {"symbols": feed.symbol_names}


def quality_frame(table: pa.Table, partition: str | date, feed):
    """The partition (any curated schema, upgraded to v2) plus the derived columns, as a pandas frame.

    Per row: ``spread`` = ask - bid; ``spread_bps`` = spread over the mid, in basis points; ``crossed`` = 1 when
    ask < bid (a crossed quote), else 0; ``locked`` = 1 when ask = bid (a locked quote), else 0; ``outside_ticks`` = on a trade, how far its price lies
    outside [bid, ask], in ticks of its symbol (0 inside; NaN on quotes); ``quote_age_s`` = on a trade, seconds
    since its symbol's quote last changed (a quote row, or a new bid or ask), 0 on quote rows;
    ``off_tick_grid`` = how far the row's prices (bid, ask, and the trade price) lie off the symbol's tick
    grid, in ticks (0 on the grid); ``off_lot_grid`` = on a trade of a symbol with a lot size, how far its size
    lies off the lot grid, in lots (NaN otherwise); ``in_partition`` = 1 when the tick lies inside the
    partition's bounds (``feed.partition_bounds``: a UTC day or a session), else 0; ``step_ns`` = nanoseconds
    since the previous tick of the same symbol in file order (NaN on its first; negative when time goes
    backwards); ``gap_s`` = seconds since the previous tick of the same symbol inside the partition, in time
    order (NaN on its first), and when the feed's partitions are sessions, on a symbol's first tick the
    seconds since the session opened and on its last the longer of its step and the seconds until it closes
    (a feed that starts late or stops early has a gap too); ``duplicate`` = 1 on a tick repeating an earlier one: the same symbol, venue and
    trade id when it has a trade id, else every column equal; ``symbol_ticks`` = the row's symbol's tick count.
    Columns judged per symbol (``outside_ticks``, ``off_tick_grid``, ``off_lot_grid``) are NaN for a symbol the
    feed does not list (the symbol-set rule names it).
    """
    table = ticks.upgrade(table).unify_dictionaries()
    n = table.num_rows
    start, end = feed.partition_bounds(str(partition))
    stamps = ticks.nanoseconds(table)
    codes, names = _labels(table["symbol"])
    instruments = [feed.symbols.get(name) for name in names]
    tick = np.array([i.tick_size if i else np.nan for i in instruments] + [np.nan])[codes]
    lot = np.array([i.lot_size if i and i.lot_size else np.nan for i in instruments] + [np.nan])[codes]
    kinds, kind_names = _labels(table["kind"])
    trade = kinds == (kind_names.index("trade") if "trade" in kind_names else -2)
    price, size = _floats(table["price"]), _floats(table["size"])
    bid, ask = _floats(table["bid"]), _floats(table["ask"])
    order = _time_order(codes, stamps)
    inside = (stamps >= start) & (stamps < end)

    # trade_id is left out: no rule reads it (duplicates are judged above), and as Python strings it would cost
    # more memory than every other column together
    frame = table.select(KEPT).to_pandas()
    spread = ask - bid
    frame["spread"] = spread
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["spread_bps"] = spread / ((ask + bid) / 2.0) * 1e4
        frame["crossed"] = (ask < bid).astype(np.int8)
        frame["locked"] = (ask == bid).astype(np.int8)
        outside = np.maximum(np.maximum(bid - price, price - ask), 0.0) / tick
        frame["outside_ticks"] = np.where(trade, np.round(outside, 6), np.nan)
        frame["quote_age_s"] = _quote_age(codes, stamps, bid, ask, trade, order)
        grid = np.fmax(_off_grid(bid, tick), _off_grid(ask, tick))
        frame["off_tick_grid"] = np.where(trade, np.fmax(grid, _off_grid(price, tick)), grid)
        frame["off_lot_grid"] = np.where(trade, _off_grid(size, lot), np.nan)
    frame["in_partition"] = inside.astype(np.int8)
    frame["step_ns"] = _steps(codes, stamps, np.arange(n))
    gaps = np.full(n, np.nan)
    kept = order[inside[order]]  # time order, ticks inside the partition only
    gaps[kept] = _steps(codes[kept], stamps[kept], np.arange(len(kept))) / 1e9
    if feed.session is not None and len(kept):  # a session has known bounds: its edges are gaps too
        ends = np.flatnonzero(np.diff(codes[kept])) + 1
        first, last = kept[np.concatenate([[0], ends])], kept[np.concatenate([ends - 1, [len(kept) - 1]])]
        gaps[first] = (stamps[first] - start) / 1e9
        gaps[last] = np.fmax(gaps[last], (end - stamps[last]) / 1e9)
    frame["gap_s"] = gaps
    frame["duplicate"] = _duplicates(table, codes, stamps, order)
    frame["symbol_ticks"] = np.bincount(codes, minlength=1)[codes].astype(np.int64)
    return frame


def _labels(column: pa.ChunkedArray) -> tuple[np.ndarray, list]:
    """A label column's codes (-1 for a null) and the names they index."""
    array = column.combine_chunks()
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(array)
    codes = pc.fill_null(array.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, array.dictionary.to_pylist()


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """A float column as numpy, null as NaN."""
    return column.combine_chunks().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _time_order(codes: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """Row positions by symbol, then timestamp (stable): the identity for a curated partition."""
    n = len(codes)
    if n < 2:
        return np.arange(n)
    same = codes[1:] == codes[:-1]
    if np.all(codes[1:] >= codes[:-1]) and not np.any((stamps[1:] < stamps[:-1]) & same):
        return np.arange(n)
    return np.lexsort((stamps, codes))


def _steps(codes: np.ndarray, stamps: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Nanoseconds since the previous row of the same symbol in ``order``; NaN on a symbol's first row.

    ``order`` is the file order (``arange``) or the time order. Rows are grouped by symbol first (stable), so a
    symbol's rows keep their order whatever the table interleaves."""
    n = len(codes)
    step = np.full(n, np.nan)
    if n < 2:
        return step
    c = codes[order]
    grouped = bool(np.all(c[1:] >= c[:-1]))
    within = order if grouped else order[np.argsort(c, kind="stable")]
    c, s = codes[within], stamps[within]
    delta = np.diff(s).astype(np.float64)
    delta[c[1:] != c[:-1]] = np.nan
    step[within[1:]] = delta
    return step


def _quote_age(codes, stamps, bid, ask, trade, order) -> np.ndarray:
    """Seconds since the row's symbol's quote last changed, in time order: 0 on a quote row, on a symbol's
    first row and on a trade whose bid or ask differs from the symbol's previous row."""
    n = len(codes)
    age = np.zeros(n)
    if n < 2:
        return age
    c, s, b, a = codes[order], stamps[order], bid[order], ask[order]
    refresh = ~trade[order]
    refresh[0] = True
    refresh[1:] |= (c[1:] != c[:-1]) | (b[1:] != b[:-1]) | (a[1:] != a[:-1])
    last = np.maximum.accumulate(np.where(refresh, np.arange(n), 0))  # a symbol's first row refreshes
    age[order] = (s - s[last]) / 1e9
    return age


def _off_grid(values: np.ndarray, step: np.ndarray) -> np.ndarray:
    """How far each value lies from the nearest multiple of its ``step``, in steps (0 to 0.5; 0 within float
    error; NaN where the value or the step is NaN)."""
    units = values / step
    off = np.abs(units - np.rint(units))
    # a decimal price divided by a decimal tick is off by a few ulps of the quotient (0.3 / 0.1 = 2.9999999999999996)
    return np.where(off <= 1e-6 + np.abs(units) * 1e-14, 0.0, np.round(off, 6))


def _duplicates(table: pa.Table, codes: np.ndarray, stamps: np.ndarray, order: np.ndarray) -> np.ndarray:
    """1 on every row that repeats an earlier one, else 0: a row with a trade id repeats an earlier row of the
    same symbol, venue and trade id (two fills with equal columns but their own ids are distinct); a row
    without one repeats an earlier row equal in every column."""
    n = len(codes)
    flag = np.zeros(n, dtype=np.int64)
    if n < 2:
        return flag
    trade_id = table["trade_id"].combine_chunks()
    has_id = pc.is_valid(trade_id).to_numpy(zero_copy_only=False)
    if has_id.any():
        rows = np.flatnonzero(has_id)
        ids, _ = _labels(pa.chunked_array([trade_id.take(pa.array(rows))]))
        venue = _labels(table["venue"])[0][rows]
        keys = (ids, venue, codes[rows])
        sort = np.lexsort(keys)  # stable: the first of equal keys is the earliest row
        same = np.ones(len(rows) - 1, dtype=bool)
        for key in keys:
            k = key[sort]
            same &= k[1:] == k[:-1]
        flag[rows[sort][1:][same]] = 1
    rows = order[~has_id[order]]  # by symbol and time: equal rows share a (symbol, timestamp) run
    c, s = codes[rows], stamps[rows]
    same = (c[1:] == c[:-1]) & (s[1:] == s[:-1])
    if not same.any():
        return flag
    members = np.unique(np.concatenate([rows[1:][same], rows[:-1][same]]))  # rows sharing (symbol, timestamp)
    sub = table.take(pa.array(members)).to_pandas()
    flag[members[sub.duplicated(keep="first").to_numpy()]] = 1
    return flag
