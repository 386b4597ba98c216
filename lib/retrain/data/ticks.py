"""Tick data: the raw and curated schemas, partitions and the parquet writer.

Raw schema (v2)
---------------
A partition is one UTC calendar day (``YYYY-MM-DD``; or the session a feed's ``session`` setting cuts, see
:func:`partition_bounds`) and may arrive as several files, each CSV (comma-separated, with a header) or
parquet, holding these columns in any order:

===========  ================================================  ================================================
column       CSV                                               parquet
===========  ================================================  ================================================
timestamp    ISO-8601 with an explicit offset, nanoseconds or  ``timestamp[ns|us]`` with a zone (read as the
             microseconds: ``2024-01-02T14:30:00.123456789Z``  instant it names); without a zone only when the
             or ``...+00:00`` (another offset is converted);   feed has a source time zone
             without an offset only when the feed declares
             ``source_timezone`` (then never with one)
symbol       text, not empty                                   string or dictionary of strings
bid, ask     decimal number, finite                            float64
price        decimal number, finite                            float64
size         decimal quantity, finite (``0.132``)              any integer or float type
side         ``B`` (buyer-initiated) or ``S`` (seller)         string or dictionary of strings
kind         ``trade`` or ``quote`` (optional)                 string or dictionary of strings
trade_id     text (optional; empty: none)                      string
venue        text (optional; empty: none)                      string or dictionary of strings
===========  ================================================  ================================================

timestamp, symbol, bid and ask are required; price, size and side come all three or not at all (not at all: a
quote-only feed). Without a kind column every row is a trade when they are there (the v1 shape, exactly
:data:`V1_COLUMNS`, still read as it always was), else a quote; with one, a trade row carries price, size and
side and a quote row none of them.

The reader is strict about structure and leaves value rules to the quality gate (``expectations/ticks.json``):
a missing, renamed, extra, repeated or retyped column is a schema change; a timestamp without a zone (local
time) is ambiguous unless the feed declares its zone; an empty required field or an unparseable value is a
broken file. Each raises :class:`~retrain.errors.DataFormatError` naming the file, the rule and the observed
value. Prices out of range, crossed quotes, ticks outside the partition, duplicates or a missing symbol parse
fine and fail the gate instead.

Normalised (curated) schema: :data:`SCHEMA` (v2; price, size and side null on quotes), rows sorted by symbol,
then timestamp, then the other columns, so the same ticks always give the same file whatever the order of the
files or rows they came in. Partitions written in :data:`SCHEMA_V1` read as v2 through :func:`read_partition`.

Modules: this one holds the schemas and what every tick module shares (partition days, Arrow/numpy
transfer, the parquet writer); :mod:`retrain.data.tick_reader` parses and normalises raw files;
:mod:`retrain.data.tick_generator` makes sample days in the raw format; :mod:`retrain.data.tick_quality`
builds the frame the quality gate validates.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timezone

import numpy as np
import pyarrow as pa

from retrain import storage
from retrain.errors import DataFormatError

V1_COLUMNS = ["timestamp", "symbol", "price", "size", "side", "bid", "ask"]  # schema v1, and the equities raw shape
RAW_COLUMNS = V1_COLUMNS
RAW_REQUIRED = ["timestamp", "symbol", "bid", "ask"]  # every raw file of schema v2 has these
TRADE_COLUMNS = ["price", "size", "side"]  # all three or none (none: a quote-only feed)
RAW_OPTIONAL = ["kind", "trade_id", "venue"]
COLUMNS = V1_COLUMNS + RAW_OPTIONAL  # the curated columns of schema v2, in order
PRICES = ["price", "bid", "ask"]
KINDS = ("quote", "trade")  # the record kinds, as the curated dictionary holds them (sorted)
LABELS = pa.dictionary(pa.int32(), pa.string())  # the type of the label columns: symbol, side, kind, venue
SCHEMA_V1 = pa.schema([
    ("timestamp", pa.timestamp("ns", tz="UTC")),
    ("symbol", LABELS),
    ("price", pa.float64()),
    ("size", pa.int64()),
    ("side", LABELS),
    ("bid", pa.float64()),
    ("ask", pa.float64()),
])
# v2: decimal sizes; price, size and side null on quote rows; an optional trade id and venue per row
SCHEMA = pa.schema([
    ("timestamp", pa.timestamp("ns", tz="UTC")),
    ("symbol", LABELS),
    ("price", pa.float64()),
    ("size", pa.float64()),
    ("side", LABELS),
    ("bid", pa.float64()),
    ("ask", pa.float64()),
    ("kind", LABELS),
    ("trade_id", pa.string()),
    ("venue", LABELS),
])
SCHEMA_VERSION = 2
ROWS_PER_FILE = 2_000_000  # curated files per partition: one per started 2 M ticks
HEADER = ",".join(RAW_COLUMNS)
SIDES = ("B", "S")
DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")
TICK_SIZE = 0.01
NS_PER_DAY = 86_400 * 10**9
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # as configs/feeds.yaml names them (closed_weekdays)
_PARTITION = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


# ---------------------------------------------------------------------------------------------------------
# arrays and partitions

# Arrays cross between numpy and Arrow through their buffers: ``Array.to_numpy`` and ``pa.array`` import
# pandas to check for pandas objects, a quarter of a second in a fresh worker process.


def numpy_view(array: pa.Array) -> np.ndarray:
    """A fixed-width integer, float or timestamp array's values as numpy, zero-copy when it has no nulls."""
    kind = array.type
    if array.null_count:
        return array.to_numpy(zero_copy_only=False)
    if pa.types.is_floating(kind):
        dtype = np.dtype(f"f{kind.bit_width // 8}")
    else:
        dtype = np.dtype(f"{'u' if pa.types.is_unsigned_integer(kind) else 'i'}{kind.bit_width // 8}")
    if len(array) == 0:
        return np.zeros(0, dtype)
    return np.frombuffer(array.buffers()[1], dtype, len(array), array.offset * dtype.itemsize)


def arrow_array(values: np.ndarray) -> pa.Array:
    """A numpy array as an Arrow array, zero-copy."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def arrow_strings(values: list[str]) -> pa.Array:
    """Python strings as an Arrow string array, built from its buffers."""
    data = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(d) for d in data], dtype=np.int64)
    return pa.Array.from_buffers(pa.string(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])


def partition_day(partition: str | date) -> date:
    """The UTC day a partition name (``YYYY-MM-DD``) stands for."""
    if isinstance(partition, date):
        return partition
    try:
        if not _PARTITION.match(partition):
            raise ValueError
        return date.fromisoformat(partition)
    except (TypeError, ValueError):
        raise DataFormatError(f"partition {partition!r}", "a tick partition is a UTC day named YYYY-MM-DD",
                              repr(partition)) from None


def partition_bounds(partition: str | date, session: tuple[str, str] | None = None) -> tuple[int, int]:
    """The UTC nanoseconds ``[start, end)`` a partition covers: its UTC day, or with ``session`` = (cut ``HH:MM``,
    IANA zone) the session ending at the cut on that day, wall clock in that zone, and starting at the cut on
    the day before (so a session across UTC midnight is one partition; a DST change makes it 23 or 25 hours)."""
    day = partition_day(partition)
    if session is None:
        start = int(datetime.combine(day, time(0), tzinfo=timezone.utc).timestamp()) * 10**9
        return start, start + NS_PER_DAY
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    cut, zone = time.fromisoformat(session[0]), ZoneInfo(session[1])
    end = datetime.combine(day, cut, tzinfo=zone)
    start = datetime.combine(day - timedelta(days=1), cut, tzinfo=zone)
    return int(start.timestamp()) * 10**9, int(end.timestamp()) * 10**9


def upgrade(table: pa.Table) -> pa.Table:
    """A curated partition in :data:`SCHEMA` (v2), whichever schema it was written in: a v1 partition (seven
    columns, integer sizes, trades only) gets decimal sizes, kind ``trade`` and no trade id or venue. Its rows
    keep their order (v1 order is v2 order: no v1 row has a trade id or venue to sort on)."""
    if "kind" in table.column_names:
        return table
    if table.column_names != V1_COLUMNS:
        raise DataFormatError("curated tick partition", f"columns must be {V1_COLUMNS} (v1) or {COLUMNS} (v2)",
                              str(table.column_names))
    n = table.num_rows
    kind = pa.DictionaryArray.from_arrays(arrow_array(np.ones(n, np.int32)), arrow_strings(list(KINDS)))
    columns = [table[name] for name in V1_COLUMNS]
    columns[3] = columns[3].cast(pa.float64())
    columns += [kind, pa.nulls(n, pa.string()), pa.nulls(n, LABELS)]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def read_partition(snapshot) -> pa.Table:
    """A committed partition version's ticks in :data:`SCHEMA` (v2), whichever schema it was written in."""
    from retrain import snapshots

    return upgrade(snapshots.read_parquet(snapshot))


def partition_of(nanoseconds: int, session: tuple[str, str] | None = None) -> date:
    """The partition an instant (UTC nanoseconds) falls in: its UTC day, or the session holding it (the day of
    the session's cut that ends it; see :func:`partition_bounds`)."""
    from datetime import timedelta

    instant = datetime.fromtimestamp(nanoseconds / 1e9, tz=timezone.utc)
    if session is None:
        return instant.date()
    from zoneinfo import ZoneInfo

    local = instant.astimezone(ZoneInfo(session[1]))
    return local.date() + timedelta(days=1) if local.time() >= time.fromisoformat(session[0]) else local.date()


def symbols(table: pa.Table) -> list[str]:
    """The symbols that trade in a normalised table, sorted (read from its codes, not row by row)."""
    column = table["symbol"].combine_chunks()
    present = np.unique(numpy_view(column.indices))
    return sorted(column.dictionary.take(arrow_array(present)).to_pylist())



# ---------------------------------------------------------------------------------------------------------
# writing

# Sizes repeat a lot within a day (dictionary pages); prices compress better plain under zstd than as
# dictionaries; timestamps rise within a symbol (deltas). Label columns are written as dictionaries, so they
# read back with the dictionary they were written with (kind's is [quote, trade] even in a day of trades only).
# Statistics only on the sort keys, the columns a reader can prune row groups by; on the others they cost
# time and serve no one.
_PARQUET_OPTIONS = {
    "compression": "zstd",
    "row_group_size": 1 << 20,
    "use_dictionary": ["symbol", "side", "size", "kind", "venue"],
    "column_encoding": {"timestamp": "DELTA_BINARY_PACKED"},
    "write_statistics": ["timestamp", "symbol"],
}


def _write_file(table: pa.Table, folder: str, name: str) -> dict:
    import hashlib

    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **_PARQUET_OPTIONS)
    data = memoryview(sink.getvalue())
    location = storage.join(folder, name)
    storage.write_bytes(location, data if storage.is_local(location) else data.tobytes())
    return {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "rows": table.num_rows}


def write_partition(table: pa.Table, folder: str) -> list[dict]:
    """Write a normalised partition as zstd parquet files; returns their manifest entries, in row order.

    A partition over :data:`ROWS_PER_FILE` rows is split into equal consecutive slices (``part-00000.parquet``,
    ...), encoded in parallel; the split depends only on the row count, so the same partition always gives
    the same files. Each file is built in memory (zstd makes it a fraction of its rows) and written in one
    atomic step, so peak memory stays near one partition.
    """
    files = max(1, -(-table.num_rows // ROWS_PER_FILE))
    bounds = np.linspace(0, table.num_rows, files + 1).astype(np.int64)
    slices = [(table.slice(lo, hi - lo), f"part-{i:05d}.parquet") for i, (lo, hi) in enumerate(zip(bounds, bounds[1:]))]
    if files == 1:
        return [_write_file(slices[0][0], folder, slices[0][1])]
    # Up to two files per core at once: with fewer, 3 files on 2 cores would leave one core idle for a third
    # of the time; the OS shares the cores out evenly instead.
    with ThreadPoolExecutor(max_workers=min(files, 2 * (os.cpu_count() or 1))) as pool:
        return list(pool.map(lambda part: _write_file(part[0], folder, part[1]), slices))



# ---------------------------------------------------------------------------------------------------------
# timestamps


def nanoseconds(table: pa.Table) -> np.ndarray:
    """A tick table's timestamps as UTC epoch nanoseconds (int64)."""
    stamps = table["timestamp"].combine_chunks().cast(pa.timestamp("ns", tz="UTC"))
    return stamps.cast(pa.int64()).to_numpy(zero_copy_only=False)
