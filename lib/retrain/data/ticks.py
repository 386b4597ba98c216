"""Tick data: the raw schema, a strict and fast reader, partition normalisation, a generator, ``quality_frame``.

Raw schema
----------
A partition is one UTC calendar day (``YYYY-MM-DD``) and may arrive as several files, each CSV (comma-separated,
with a header) or parquet, holding exactly these columns (any order):

===========  ================================================  ================================================
column       CSV                                               parquet
===========  ================================================  ================================================
timestamp    ISO-8601 with an explicit offset, nanoseconds or  ``timestamp[ns, tz=UTC]`` or ``timestamp[us,
             microseconds: ``2024-01-02T14:30:00.123456789Z``  tz=UTC]`` (any zone-aware type is read as the
             or ``...+00:00`` (another offset is converted)    instant it names)
symbol       text, not empty                                   string or dictionary of strings
price        decimal number, finite                            float64
size         integer                                           any integer type
side         ``B`` (buyer-initiated) or ``S`` (seller)         string or dictionary of strings
bid, ask     decimal number, finite                            float64
===========  ================================================  ================================================

The reader is strict about structure and leaves value rules to the quality gate (``expectations/ticks.json``):
a missing, renamed, extra or retyped column is a schema change; a timestamp without a zone (local time) is
ambiguous; an empty field or an unparseable value is a broken file. Each raises
:class:`~retrain.errors.DataFormatError` naming the file, the rule and the observed value. Prices out of
range, crossed quotes, ticks outside the partition's day, duplicates or a missing symbol parse fine and fail
the gate instead.

Normalised (curated) schema: :data:`SCHEMA`, rows sorted by symbol, then timestamp, then the other columns,
so the same ticks always give the same file whatever the order of the files or rows they came in.
"""

from __future__ import annotations

import io
import os
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from retrain import storage
from retrain.errors import DataFormatError

RAW_COLUMNS = ["timestamp", "symbol", "price", "size", "side", "bid", "ask"]
PRICES = ["price", "bid", "ask"]
_DICTIONARY = pa.dictionary(pa.int32(), pa.string())
SCHEMA = pa.schema([
    ("timestamp", pa.timestamp("ns", tz="UTC")),
    ("symbol", _DICTIONARY),
    ("price", pa.float64()),
    ("size", pa.int64()),
    ("side", _DICTIONARY),
    ("bid", pa.float64()),
    ("ask", pa.float64()),
])
SCHEMA_VERSION = 1
ROWS_PER_FILE = 2_000_000  # curated files per partition: one per started 2 M ticks
HEADER = ",".join(RAW_COLUMNS)
SIDES = ("B", "S")
DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")
TICK_SIZE = 0.01
_NS_PER_DAY = 86_400 * 10**9
_CSV_TYPES = {
    "timestamp": pa.timestamp("ns", tz="UTC"),
    "symbol": _DICTIONARY,
    "price": pa.float64(),
    "size": pa.int64(),
    "side": _DICTIONARY,
    "bid": pa.float64(),
    "ask": pa.float64(),
}
_PARTITION = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_NOT_BLANK = re.compile(rb"\S")  # finds the first non-blank byte without copying the file (bytes.strip would)


# ---------------------------------------------------------------------------------------------------------
# reading


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


def _schema_change(file: str, names: list[str]) -> DataFormatError:
    missing = [c for c in RAW_COLUMNS if c not in names]
    extra = [c for c in names if c not in RAW_COLUMNS]
    repeated = sorted({c for c in names if names.count(c) > 1})
    detail = []
    if missing:
        detail.append(f"missing {missing}")
    if extra:
        detail.append(f"unexpected {extra}" + (" (renamed?)" if missing else ""))
    if repeated:
        detail.append(f"repeated {repeated}")
    return DataFormatError(file, f"columns must be {HEADER} (schema change)", "; ".join(detail))


def _header(file: str, data: bytes) -> list[str]:
    """The CSV header's column names; a different delimiter or set of names is a DataFormatError."""
    end = data.find(b"\n")
    header = (data if end < 0 else data[:end]).decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r")
    if "," not in header:
        for delimiter in (";", "\t", "|"):
            if delimiter in header:
                raise DataFormatError(file, "fields must be separated by ','",
                                      f"header separated by {delimiter!r}: {header[:120]!r}")
    names = [n[1:-1] if len(n) > 1 and n[0] == n[-1] == '"' else n for n in header.split(",")]
    if sorted(names) != sorted(RAW_COLUMNS):
        raise _schema_change(file, names)
    return names


def _row_of(data: bytes, column: str, value: str) -> int | None:
    """Data row (0-based) holding ``value`` in ``column``: re-read that one column as text (error path only)."""
    try:
        text = pacsv.read_csv(
            io.BytesIO(data),
            convert_options=pacsv.ConvertOptions(include_columns=[column], column_types={column: pa.string()},
                                                 strings_can_be_null=False),
        )[column]
    except pa.ArrowInvalid:
        return None
    row = pc.index(text, value).as_py()
    return None if row < 0 else row


def _csv_error(file: str, data: bytes, names: list[str], exc: Exception) -> DataFormatError:
    message = str(exc).splitlines()[0]
    if "Expected" in message and "columns" in message:
        return DataFormatError(file, f"every row must have {len(RAW_COLUMNS)} comma-separated fields", message)
    column_match = re.search(r"CSV column #(\d+)", message)
    value_match = re.search(r"(?:invalid value|zone offset in) '(.*)'", message)
    column = names[int(column_match.group(1))] if column_match and int(column_match.group(1)) < len(names) else None
    value = value_match.group(1) if value_match else None
    where = ""
    if column and value is not None:
        row = _row_of(data, column, value)
        where = (f"data row {row + 1}, " if row is not None else "") + f"column {column}: {value!r}"
    if "expected a zone offset" in message:
        return DataFormatError(
            file,
            "timestamps must carry an explicit UTC offset ('Z' or '+00:00'): local time without a zone is ambiguous",
            where or message,
        )
    if column == "timestamp":
        return DataFormatError(file, "timestamp must be ISO-8601 with an offset, e.g. 2024-01-02T14:30:00.123456789Z",
                               where or message)
    if column in PRICES:
        return DataFormatError(file, f"{column} must be a decimal number", where or message)
    if column == "size":
        return DataFormatError(file, "size must be an integer", where or message)
    return DataFormatError(file, "file must be valid comma-separated text", where or message)


def _read_csv(data: bytes, file: str) -> pa.Table:
    names = _header(file, data)
    end = data.find(b"\n")
    if end < 0 or not _NOT_BLANK.search(data, end + 1):
        return SCHEMA.empty_table()
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(use_threads=True, block_size=1 << 24),
            convert_options=pacsv.ConvertOptions(
                column_types=_CSV_TYPES,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise _csv_error(file, data, names, exc) from None


def _parquet_type_ok(name: str, kind: pa.DataType) -> bool:
    def stringy(t: pa.DataType) -> bool:
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)

    if name == "timestamp":
        return pa.types.is_timestamp(kind) and kind.unit in ("ns", "us") and kind.tz is not None
    if name in ("symbol", "side"):
        return stringy(kind) or (pa.types.is_dictionary(kind) and stringy(kind.value_type))
    if name in PRICES:
        return pa.types.is_float64(kind)
    return pa.types.is_integer(kind)  # size


_PARQUET_EXPECTED = {
    "timestamp": "timestamp[ns, tz=UTC] or timestamp[us, tz=UTC]",
    "symbol": "string",
    "side": "string",
    "price": "float64",
    "bid": "float64",
    "ask": "float64",
    "size": "an integer type",
}


def _read_parquet(data: bytes, file: str) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        schema = parquet.schema_arrow
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFormatError(file, "file must be a readable parquet file", str(exc).splitlines()[0]) from None
    names = schema.names
    if sorted(names) != sorted(RAW_COLUMNS):
        raise _schema_change(file, names)
    for name in RAW_COLUMNS:
        kind = schema.field(name).type
        if name == "timestamp" and pa.types.is_timestamp(kind) and kind.tz is None:
            raise DataFormatError(
                file,
                "timestamp must be zone-aware UTC (timestamp[ns, tz=UTC] or timestamp[us, tz=UTC]): local time "
                "without a zone is ambiguous",
                f"{kind} (no zone)",
            )
        if not _parquet_type_ok(name, kind):
            raise DataFormatError(file, f"column {name} must be {_PARQUET_EXPECTED[name]} (schema change)", str(kind))
    try:
        return parquet.read()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFormatError(file, "file must be a readable parquet file", str(exc).splitlines()[0]) from None


def _sorted_dictionary(column: pa.ChunkedArray | pa.Array) -> pa.DictionaryArray:
    """One dictionary array whose dictionary is sorted, so index order is value order (and files agree).

    The CSV reader gives every block its own dictionary; each block's indices are remapped in parallel
    straight into one output buffer.
    """
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    chunks = [c if pa.types.is_dictionary(c.type) else pc.dictionary_encode(c) for c in chunks]
    chunks = [c.cast(_DICTIONARY) if c.type != _DICTIONARY else c for c in chunks]
    values = sorted({v for c in chunks for v in c.dictionary.to_pylist()} - {None})
    position = {v: i for i, v in enumerate(values)}
    codes = np.empty(sum(len(c) for c in chunks), dtype=np.int32)
    offsets = np.cumsum([0] + [len(c) for c in chunks])

    def remap(i: int) -> None:
        chunk = chunks[i]
        lookup = np.array([position.get(v, -1) for v in chunk.dictionary.to_pylist()] or [-1], dtype=np.int32)
        np.take(lookup, chunk.indices.to_numpy(zero_copy_only=False), out=codes[offsets[i]:offsets[i + 1]])

    if len(chunks) > 1 and len(codes) > 1 << 20:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(remap, range(len(chunks))))
    else:
        for i in range(len(chunks)):
            remap(i)
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(values, pa.string()))


def _first(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.index(mask, True).as_py())


def _check_values(table: pa.Table, file: str) -> None:
    """Every field present, prices finite (on the raw table: nulls must be seen before dictionaries are merged)."""
    for name in RAW_COLUMNS:
        column = table[name]
        if column.null_count:
            row = _first(pc.is_null(column))
            raise DataFormatError(file, "every field must hold a value", f"data row {row + 1}, column {name}: empty")
    for name in PRICES:
        not_finite = pc.invert(pc.is_finite(table[name]))
        if pc.any(not_finite).as_py():
            row = _first(not_finite)
            raise DataFormatError(file, f"{name} must be a finite number",
                                  f"data row {row + 1}: {table[name][row].as_py()!r}")


def _check_labels(table: pa.Table, file: str) -> None:
    """Symbols not empty, sides B or S: checked on the (small) dictionaries, rows looked up only on failure."""
    for name, bad_value, rule in (
        ("symbol", lambda v: v == "", "symbol must not be empty"),
        ("side", lambda v: v not in SIDES, "side must be 'B' (buyer-initiated) or 'S' (seller-initiated)"),
    ):
        column = table[name].combine_chunks()
        bad = [i for i, v in enumerate(column.dictionary.to_pylist()) if bad_value(v)]
        if not bad:
            continue
        rows = np.flatnonzero(np.isin(column.indices.to_numpy(zero_copy_only=False), bad))
        if len(rows):
            raise DataFormatError(file, rule, f"data row {rows[0] + 1}: {column[int(rows[0])].as_py()!r}")


def _normalise(table: pa.Table) -> pa.Table:
    timestamp = table["timestamp"].cast(pa.timestamp("ns", tz=table.schema.field("timestamp").type.tz))
    columns = [
        timestamp.cast(pa.timestamp("ns", tz="UTC")).combine_chunks(),  # one buffer: sorted on in numpy
        _sorted_dictionary(table["symbol"]),
        table["price"],
        table["size"].cast(pa.int64()),
        _sorted_dictionary(table["side"]),
        table["bid"],
        table["ask"],
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def read_tick_file(data: bytes, file: str) -> pa.Table:
    """Parse one raw tick file (CSV or parquet, told apart by content) into :data:`SCHEMA`, in file order."""
    if not _NOT_BLANK.search(data):
        raise DataFormatError(file, f"file must start with the header {HEADER!r}", f"empty file ({len(data)} bytes)")
    table = _read_parquet(data, file) if data[:4] == b"PAR1" else _read_csv(data, file)
    if table.num_rows == 0:
        return SCHEMA.empty_table()
    _check_values(table, file)
    try:
        table = _normalise(table)
    except pa.ArrowInvalid as exc:  # e.g. a uint64 size beyond int64
        raise DataFormatError(file, "values must fit the curated schema", str(exc).splitlines()[0]) from None
    _check_labels(table, file)
    return table


def read_tick_location(location: str) -> pa.Table:
    """Read one tick file (local path or URI)."""
    return read_tick_file(storage.read_bytes(location), storage.name(location))


def _unify(tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    columns = []
    for name in RAW_COLUMNS:
        chunks = [chunk for t in tables for chunk in t[name].chunks]
        if name in ("symbol", "side"):
            columns.append(_sorted_dictionary(pa.chunked_array(chunks, _DICTIONARY)))
        else:
            columns.append(pa.chunked_array(chunks, SCHEMA.field(name).type).combine_chunks())
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _column_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column's values as numpy (zero-copy when it is one chunk); dictionary columns give their indices."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) and column.num_chunks != 1 else (
        column.chunk(0) if isinstance(column, pa.ChunkedArray) else column)
    if pa.types.is_dictionary(array.type):
        array = array.indices
    elif pa.types.is_timestamp(array.type):
        array = array.cast(pa.int64())
    return array.to_numpy(zero_copy_only=False)


def sort_order(table: pa.Table) -> np.ndarray:
    """Row order by symbol, timestamp, then every other column: a total order, so the result is deterministic.

    The symbol dictionary must be sorted (as :func:`read_tick_file` makes it). Ties on (symbol, timestamp) are
    rare in real feeds; only those runs are sorted on the remaining columns.
    """
    codes = _column_numpy(table["symbol"])
    stamps = _column_numpy(table["timestamp"])
    if len(codes) < 2:
        return np.arange(len(codes))
    order = sorted_stamps = None
    if codes.max() < 128:
        # Feeds arrive in time order: a stable radix sort on the symbol alone then leaves each symbol in time
        # order, which is checked; anything else takes the general two-key sort.
        order = np.argsort(codes.astype(np.int8), kind="stable")
        sorted_stamps = stamps[order]
        same_symbol = np.ones(len(codes) - 1, dtype=bool)
        same_symbol[np.cumsum(np.bincount(codes))[:-1] - 1] = False  # last row of each symbol but the last
        if np.any((sorted_stamps[1:] < sorted_stamps[:-1]) & same_symbol):
            order = None
    if order is None:
        order = np.lexsort((stamps, codes))
        sorted_stamps = stamps[order]
        sorted_codes = codes[order]
        same_symbol = sorted_codes[1:] == sorted_codes[:-1]
    tied = (sorted_stamps[1:] == sorted_stamps[:-1]) & same_symbol
    if tied.any():
        in_run = np.zeros(len(order), dtype=bool)
        in_run[1:] |= tied
        in_run[:-1] |= tied
        positions = np.flatnonzero(in_run)
        run_id = np.cumsum(np.concatenate([[True], ~tied]))[positions]
        members = order[positions]
        sub = table.take(pa.array(members)).select(["price", "size", "side", "bid", "ask"])
        side = sub["side"].combine_chunks().indices
        keys = pa.table({"run": run_id, "price": sub["price"], "size": sub["size"], "side": side,
                         "bid": sub["bid"], "ask": sub["ask"], "row": members})
        resolved = keys.sort_by([(k, "ascending") for k in ("run", "price", "size", "side", "bid", "ask")])
        order[positions] = resolved["row"].to_numpy()
    return order


def normalize_partition(files: list[tuple[str, bytes]], partition: str) -> pa.Table:
    """Parse every file of a partition and return one table in :data:`SCHEMA`, sorted (see :func:`sort_order`).

    Holds one partition in memory: the raw bytes given, the parsed tables and the sorted copy.
    """
    partition_day(partition)
    tables = [read_tick_file(data, name) for name, data in sorted(files, key=lambda f: f[0])]
    rows = sum(t.num_rows for t in tables)
    if rows == 0:
        names = ", ".join(name for name, _ in files) or "no files"
        raise DataFormatError(f"partition {partition}", "partition must contain at least one tick",
                              f"0 ticks in {len(files)} file(s): {names}")
    table = _unify([t for t in tables if t.num_rows])
    del tables
    order = sort_order(table)
    if np.all(order[1:] > order[:-1]):
        return table
    return _take(table, order)


def _take(table: pa.Table, order: np.ndarray) -> pa.Table:
    """``table.take(order)``, in parallel slices of ``order`` on large tables (Arrow's take is one thread)."""
    pieces = min(os.cpu_count() or 1, max(1, len(order) // (1 << 20)))
    if pieces == 1:
        return table.take(pa.array(order))
    with ThreadPoolExecutor(max_workers=pieces) as pool:
        return pa.concat_tables(pool.map(lambda part: table.take(pa.array(part)), np.array_split(order, pieces)))


def _write_file(table: pa.Table, folder: str, name: str) -> dict:
    import hashlib

    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    # Prices and sizes repeat a lot within a day (dictionary pages); timestamps rise within a symbol (deltas).
    pq.write_table(table, sink, compression="zstd", row_group_size=1 << 20,
                   use_dictionary=["symbol", "side", "price", "size", "bid", "ask"],
                   column_encoding={"timestamp": "DELTA_BINARY_PACKED"})
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
    with ThreadPoolExecutor(max_workers=min(files, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda part: _write_file(part[0], folder, part[1]), slices))


# ---------------------------------------------------------------------------------------------------------
# sample generator

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


def _symbol_ticks(rng: np.random.Generator, n: int, level: float, open_ns: int, minutes: int) -> dict:
    u = (np.arange(minutes) + 0.5) / minutes
    season = 1.0 + 3.0 * (2.0 * u - 1.0) ** 2  # U-shape: 4x the midday activity at the open and the close
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

    daily_vol = 0.012 + 0.01 * rng.random()
    minute_vol = daily_vol / np.sqrt(minutes) * np.sqrt(season / season.mean())
    previous_flow = np.concatenate([[0.0], flow[:-1]])
    dt = np.diff(stamps, prepend=open_ns) / 60e9  # minutes since the previous tick
    ticks_per_minute = max(n / minutes, 1.0)
    sigma = minute_vol[minute]
    step = (_FLOW_TO_DRIFT * previous_flow[minute] * sigma * dt
            + sigma * np.sqrt(dt) * rng.standard_normal(n)
            + _IMPACT * sigma * sign / ticks_per_minute)
    mid = level * np.exp(np.cumsum(step))

    # quotes on the cent grid: a spread of a few ticks, wider for pricier names and when it is busy
    base = max(1, int(round(level * 0.4e-4 / TICK_SIZE)))
    spread = base + np.minimum(rng.geometric(0.55, n) - 1, 5) + (rng.random(n) < 0.1 * season[minute] / 4.0)
    bid_ticks = np.maximum(np.round(mid / TICK_SIZE - spread / 2.0).astype(np.int64), 1)
    ask_ticks = bid_ticks + spread
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


def _iso_utc(nanoseconds: np.ndarray) -> pa.Array:
    """``YYYY-MM-DDTHH:MM:SS.fffffffffZ`` for epoch nanoseconds, digit by digit in numpy (Arrow's strftime is
    several times slower on millions of rows)."""
    n = len(nanoseconds)
    days, within = np.divmod(nanoseconds, _NS_PER_DAY)
    text = np.empty((n, 30), dtype=np.uint8)
    unique_days, day_index = np.unique(days, return_inverse=True)
    dates = np.array([list(str(np.datetime64(int(d), "D")).encode()) for d in unique_days], dtype=np.uint8)
    text[:, :10] = dates.reshape(-1, 10)[day_index]
    seconds, fraction = np.divmod(within, 10**9)
    hours, rest = np.divmod(seconds, 3600)
    minutes, secs = np.divmod(rest, 60)
    for start, value, width in ((11, hours, 2), (14, minutes, 2), (17, secs, 2), (20, fraction, 9)):
        for position in range(start + width - 1, start - 1, -1):
            value, digit = np.divmod(value, 10)
            text[:, position] = digit + ord("0")
    for position, char in ((10, "T"), (13, ":"), (16, ":"), (19, "."), (29, "Z")):
        text[:, position] = ord(char)
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(30), n, [None, pa.py_buffer(text)])
    return fixed.cast(pa.binary()).cast(pa.string())


def to_csv_bytes(table: pa.Table) -> bytes:
    """A tick table as a raw CSV file: header, ISO-8601 timestamps with a ``Z`` (nanoseconds), no quoting."""
    text = _iso_utc(_nanoseconds(table))
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
# quality frame


def _codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(array)
    return array.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _nanoseconds(table: pa.Table) -> np.ndarray:
    stamps = table["timestamp"].combine_chunks().cast(pa.timestamp("ns", tz="UTC"))
    return stamps.cast(pa.int64()).to_numpy(zero_copy_only=False)


def _duplicates(table: pa.Table, codes: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """1 on every row that repeats an earlier row in all columns, else 0."""
    flag = np.zeros(len(codes), dtype=np.int64)
    if len(codes) < 2:
        return flag
    same_symbol = codes[1:] == codes[:-1]
    if np.all(codes[1:] >= codes[:-1]) and not np.any((stamps[1:] < stamps[:-1]) & same_symbol):
        order = np.arange(len(codes))  # already by symbol and time, as curated partitions are: no sort
        same = same_symbol & (stamps[1:] == stamps[:-1])
    else:
        order = np.lexsort((stamps, codes))
        same = (codes[order][1:] == codes[order][:-1]) & (stamps[order][1:] == stamps[order][:-1])
    if not same.any():
        return flag
    members = np.unique(np.concatenate([order[1:][same], order[:-1][same]]))  # rows sharing (symbol, timestamp)
    sub = table.select(RAW_COLUMNS).take(pa.array(members)).to_pandas()
    flag[members[sub.duplicated(keep="first").to_numpy()]] = 1
    return flag


def _steps(codes: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """Nanoseconds since the previous tick of the same symbol, in table order; NaN on a symbol's first tick."""
    n = len(codes)
    step = np.full(n, np.nan)
    if n < 2:
        return step
    grouped = bool(np.all(codes[1:] >= codes[:-1]))
    order = np.arange(n) if grouped else np.argsort(codes, kind="stable")
    c, s = codes[order], stamps[order]
    within = np.diff(s).astype(np.float64)
    within[c[1:] != c[:-1]] = np.nan
    step[order[1:]] = within
    return step


def quality_frame(table: pa.Table, partition: str | date):
    """The curated partition plus the derived columns ``expectations/ticks.json`` checks, as a pandas frame.

    ``spread`` = ask - bid; ``spread_bps`` = spread over the mid price, in basis points; ``in_partition`` =
    1 when the tick lies inside the partition's UTC day, else 0; ``step_ns`` = nanoseconds since the previous
    tick of the same symbol in file order (NaN on a symbol's first tick; negative when time goes backwards);
    ``duplicate`` = 1 on a tick that repeats an earlier one in every column; ``symbol_ticks`` = how many ticks
    that row's symbol has in the partition.
    """
    day = partition_day(partition)
    start = int(datetime.combine(day, time(0), tzinfo=timezone.utc).timestamp()) * 10**9
    stamps = _nanoseconds(table)
    codes = _codes(table["symbol"])
    bid = table["bid"].to_numpy()
    ask = table["ask"].to_numpy()
    spread = ask - bid
    with np.errstate(divide="ignore", invalid="ignore"):
        spread_bps = spread / ((ask + bid) / 2.0) * 1e4
    counts = np.bincount(codes, minlength=1) if len(codes) else np.zeros(0, np.int64)
    frame = table.select(RAW_COLUMNS).to_pandas()
    frame["spread"] = spread
    frame["spread_bps"] = spread_bps
    frame["in_partition"] = ((stamps >= start) & (stamps < start + _NS_PER_DAY)).astype(np.int64)
    frame["step_ns"] = _steps(codes, stamps)
    frame["duplicate"] = _duplicates(table, codes, stamps)
    frame["symbol_ticks"] = counts[codes].astype(np.int64) if len(codes) else np.zeros(0, np.int64)
    return frame

