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

Speed and memory: a file given by its location is streamed to ``pyarrow.csv``, which parses it block by block
on all cores, so a partition is held once, parsed, never also as raw text; a feed in time order (the usual
case) is sorted by grouping each block by symbol, without copying a column whole
(``bench/bench_tick_ingest.py`` measures both).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import zlib
from collections.abc import Iterator
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
    "symbol": pa.binary(),  # labels are encoded after parsing: cheaper than the reader's per-block dictionaries
    "price": pa.float64(),
    "size": pa.int64(),
    "side": pa.binary(),
    "bid": pa.float64(),
    "ask": pa.float64(),
}
_BLOCK_SIZE = 1 << 22  # CSV bytes parsed per task: each reader thread holds about one block of raw text
_HEAD = 1 << 16  # bytes read first: enough to tell CSV from parquet and to check the header
_PARTITION = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_NOT_BLANK = re.compile(rb"\S")  # finds the first non-blank byte without copying the file (bytes.strip would)


# ---------------------------------------------------------------------------------------------------------
# reading

# Arrays cross between numpy and Arrow through their buffers: ``Array.to_numpy`` and ``pa.array`` import
# pandas to check for pandas objects, a quarter of a second in a fresh worker process.


def _numpy(array: pa.Array) -> np.ndarray:
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


def _arrow(values: np.ndarray) -> pa.Array:
    """A numpy array as an Arrow array, zero-copy."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def _strings(values: list[str]) -> pa.Array:
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


@contextlib.contextmanager
def _open(source: bytes | str) -> Iterator[pa.NativeFile]:
    """A raw file as an Arrow stream: its bytes (zero-copy), or its location (local path or URI), read block by
    block so the file is never held whole."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield pa.BufferReader(source)
    elif storage.is_local(source):
        with pa.OSFile(storage.from_uri(source)) as stream:
            yield stream
    else:
        with storage.open_read(source) as handle:
            yield pa.PythonFile(handle, mode="r")


def _header(file: str, head: bytes) -> list[str]:
    """The CSV header's column names; a different delimiter or set of names is a DataFormatError."""
    end = head.find(b"\n")
    header = (head if end < 0 else head[:end]).decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r")
    if "," not in header:
        for delimiter in (";", "\t", "|"):
            if delimiter in header:
                raise DataFormatError(file, "fields must be separated by ','",
                                      f"header separated by {delimiter!r}: {header[:120]!r}")
    names = [n[1:-1] if len(n) > 1 and n[0] == n[-1] == '"' else n for n in header.split(",")]
    if sorted(names) != sorted(RAW_COLUMNS):
        raise _schema_change(file, names)
    return names


def _row_of(source: bytes | str, column: str, value: str) -> int | None:
    """Data row (0-based) holding ``value`` in ``column``: re-read that one column as text (error path only)."""
    try:
        with _open(source) as stream:
            text = pacsv.read_csv(
                stream,
                convert_options=pacsv.ConvertOptions(include_columns=[column], column_types={column: pa.string()},
                                                     strings_can_be_null=False),
            )[column]
    except pa.ArrowInvalid:
        return None
    row = pc.index(text, value).as_py()
    return None if row < 0 else row


def _csv_error(file: str, source: bytes | str, names: list[str], exc: Exception) -> DataFormatError:
    message = str(exc).splitlines()[0]
    if "Expected" in message and "columns" in message:
        return DataFormatError(file, f"every row must have {len(RAW_COLUMNS)} comma-separated fields", message)
    column_match = re.search(r"CSV column #(\d+)", message)
    value_match = re.search(r"(?:invalid value|zone offset in) '(.*)'", message)
    column = names[int(column_match.group(1))] if column_match and int(column_match.group(1)) < len(names) else None
    value = value_match.group(1) if value_match else None
    where = ""
    if column and value is not None:
        row = _row_of(source, column, value)
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


def _read_csv(stream: pa.NativeFile, head: bytes, source: bytes | str, file: str) -> pa.Table:
    """Parse a CSV stream on all cores, one block at a time; labels stay raw bytes (encoded by _labels)."""
    names = _header(file, head)
    end = head.find(b"\n")
    if end < 0 or (len(head) < _HEAD and not _NOT_BLANK.search(head, end + 1)):
        return SCHEMA.empty_table()  # a header and nothing else
    stream.seek(0)
    try:
        return pacsv.read_csv(
            stream,
            read_options=pacsv.ReadOptions(use_threads=True, block_size=_BLOCK_SIZE),
            convert_options=pacsv.ConvertOptions(
                column_types=_CSV_TYPES,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise _csv_error(file, source, names, exc) from None


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


def _read_parquet(stream: pa.NativeFile, file: str) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream)
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


def _first(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.index(mask, True).as_py())


def _check_values(table: pa.Table, file: str) -> None:
    """Every field present, prices finite (on the raw table: nulls must be seen before labels are encoded)."""
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


def _side_codes(column: pa.ChunkedArray) -> np.ndarray | None:
    """Indices into SIDES straight from one-byte CSV fields, in numpy; None if any field is not exactly B or S."""
    codes = np.empty(len(column), dtype=np.int32)
    at = 0
    for chunk in column.chunks:
        n = len(chunk)
        if n == 0:
            continue
        offsets = np.frombuffer(chunk.buffers()[1], np.int32, n + 1, chunk.offset * 4)
        if offsets[-1] - offsets[0] != n or np.any(np.diff(offsets) != 1):
            return None
        letters = np.frombuffer(chunk.buffers()[2], np.uint8, n, int(offsets[0]))
        sell = letters == ord("S")
        if not np.all(sell | (letters == ord("B"))):
            return None
        codes[at:at + n] = sell
        at += n
    return codes


def _map(function, items, rows: int) -> list:
    """``[function(item) for item in items]``, on all cores when there are enough rows to be worth it (the Arrow
    kernels and numpy calls this runs release the GIL)."""
    items = list(items)
    if len(items) < 2 or rows < 1 << 20:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(function, items))


_LABEL_RULES = {
    "symbol": ("symbol must not be empty", lambda v: v != ""),
    "side": ("side must be 'B' (buyer-initiated) or 'S' (seller-initiated)", lambda v: v in SIDES),
}


def _labels(column: pa.ChunkedArray, name: str, file: str) -> pa.DictionaryArray:
    """A text column (bytes, strings or dictionaries) as one dictionary array whose dictionary is sorted, so index
    order is value order and files agree; side's dictionary is always SIDES.

    The rules (UTF-8, not empty, B or S) are checked on the distinct values; rows are looked up only on failure.
    The codes of every chunk are remapped in parallel straight into one buffer.
    """
    if name == "side" and pa.types.is_binary(column.type):
        codes = _side_codes(column)  # the common case, without hashing
        if codes is not None:
            return pa.DictionaryArray.from_arrays(_arrow(codes), _strings(list(SIDES)))
    chunks = column.chunks
    if not pa.types.is_dictionary(column.type):
        chunks = _map(pc.dictionary_encode, chunks, len(column))  # a dictionary per chunk, remapped below
    raw = [c.dictionary.to_pylist() for c in chunks]
    rule, valid = _LABEL_RULES[name]
    text: dict[bytes | str, str | None] = {}
    for value in {v for values in raw for v in values if v is not None}:
        try:
            text[value] = value.decode("utf-8") if isinstance(value, bytes) else value
        except UnicodeDecodeError:
            text[value] = None
    bad = {v for v, t in text.items() if t is None or not valid(t)}
    if bad:
        at = 0
        for chunk, values in zip(chunks, raw):
            lookup = np.array([v in bad for v in values] or [False])
            rows = np.flatnonzero(lookup[_numpy(chunk.indices)])
            if len(rows):
                value = values[chunk.indices[int(rows[0])].as_py()]
                row = at + int(rows[0]) + 1
                if text[value] is None:
                    raise DataFormatError(file, f"{name} must be UTF-8 text", f"data row {row}: {value!r}")
                raise DataFormatError(file, rule, f"data row {row}: {text[value]!r}")
            at += len(chunk)
    values = list(SIDES) if name == "side" else sorted(set(text.values()))
    position = {v: i for i, v in enumerate(values)}
    codes = np.empty(len(column), dtype=np.int32)
    offsets = np.cumsum([0] + [len(c) for c in chunks])

    def remap(i: int) -> None:
        lookup = np.array([position.get(text.get(v), -1) for v in raw[i]] or [-1], dtype=np.int32)
        np.take(lookup, _numpy(chunks[i].indices), out=codes[offsets[i]:offsets[i + 1]])

    _map(remap, range(len(chunks)), len(codes))
    return pa.DictionaryArray.from_arrays(_arrow(codes), _strings(values))


def _normalise(table: pa.Table, file: str) -> pa.Table:
    """Parsed columns in :data:`SCHEMA`: UTC nanosecond timestamps, int64 sizes, labels as sorted dictionaries."""
    timestamp = table["timestamp"]
    if timestamp.type != SCHEMA.field("timestamp").type:
        timestamp = timestamp.cast(pa.timestamp("ns", tz=timestamp.type.tz)).cast(SCHEMA.field("timestamp").type)
    columns = [timestamp, _labels(table["symbol"], "symbol", file), table["price"], table["size"].cast(pa.int64()),
               _labels(table["side"], "side", file), table["bid"], table["ask"]]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _read(source: bytes | str, file: str) -> pa.Table:
    with _open(source) as stream:
        head = stream.read(_HEAD)
        if len(head) < _HEAD and not _NOT_BLANK.search(head):
            raise DataFormatError(file, f"file must start with the header {HEADER!r}",
                                  f"empty file ({len(head)} bytes)")
        table = _read_parquet(stream, file) if head[:4] == b"PAR1" else _read_csv(stream, head, source, file)
    if table.num_rows == 0:
        return SCHEMA.empty_table()
    _check_values(table, file)
    try:
        return _normalise(table, file)
    except pa.ArrowInvalid as exc:  # e.g. a uint64 size beyond int64
        raise DataFormatError(file, "values must fit the curated schema", str(exc).splitlines()[0]) from None


def read_tick_file(data: bytes, file: str) -> pa.Table:
    """Parse one raw tick file (CSV or parquet, told apart by content) into :data:`SCHEMA`, in file order."""
    return _read(data, file)


def read_tick_location(location: str) -> pa.Table:
    """Read one tick file (local path or URI) as :func:`read_tick_file` does, streamed: never held whole."""
    return _read(location, storage.name(location))


def symbols(table: pa.Table) -> list[str]:
    """The symbols that trade in a normalised table, sorted (read from its codes, not row by row)."""
    column = table["symbol"].combine_chunks()
    present = np.unique(_numpy(column.indices))
    return sorted(column.dictionary.take(_arrow(present)).to_pylist())


def _unify(tables: list[pa.Table]) -> pa.Table:
    """Several files' tables as one: symbol dictionaries merged (still sorted), the other columns chained."""
    if len(tables) == 1:
        return tables[0]
    columns = []
    for name in RAW_COLUMNS:
        chunks = [chunk for t in tables for chunk in t[name].chunks]
        if name == "symbol":
            columns.append(_labels(pa.chunked_array(chunks, _DICTIONARY), name, "partition"))
        else:
            columns.append(pa.chunked_array(chunks, SCHEMA.field(name).type))
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _column_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column's values as numpy (zero-copy when it is one chunk); dictionary columns give their indices."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) and column.num_chunks != 1 else (
        column.chunk(0) if isinstance(column, pa.ChunkedArray) else column)
    if pa.types.is_dictionary(array.type):
        array = array.indices
    elif pa.types.is_timestamp(array.type):
        array = array.cast(pa.int64())
    return _numpy(array)


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


def normalize_partition(files: list[tuple[str, bytes | str]], partition: str) -> pa.Table:
    """Parse every file of a partition and return one table in :data:`SCHEMA`, sorted (see :func:`sort_order`).

    A file is ``(name, content)``, the content being its raw bytes or its location (local path or URI), which
    is streamed: raw files are parsed block by block, never held whole. Memory peaks near one parsed partition.
    """
    partition_day(partition)
    tables = [_read(source, name) for name, source in sorted(files, key=lambda f: f[0])]
    rows = sum(t.num_rows for t in tables)
    if rows == 0:
        names = ", ".join(name for name, _ in files) or "no files"
        raise DataFormatError(f"partition {partition}", "partition must contain at least one tick",
                              f"0 ticks in {len(files)} file(s): {names}")
    parts = [_unify([t for t in tables if t.num_rows])]
    del tables
    return _sorted(parts)


def _sorted(parts: list[pa.Table]) -> pa.Table:
    """The one table in ``parts``, sorted. ``parts`` is emptied, so that each source block can be released as
    soon as it is reordered: the sort then needs little more memory than the table itself."""
    table = parts.pop()
    codes = _column_numpy(table["symbol"])
    if codes.max() < 1 << 15 and _in_feed_order(table["timestamp"], codes):
        # Feeds arrive in time order: grouping the rows by symbol, keeping their order, is then the sort. Done
        # block by block, so no column is ever copied whole.
        symbols = table["symbol"].combine_chunks().dictionary
        bounds = _block_bounds(table["timestamp"], len(symbols))
        blocks = {name: _blocks(table[name], bounds) for name in RAW_COLUMNS if name != "symbol"}
        del table
        return _group_by_symbol(blocks, codes, bounds, symbols)
    order = sort_order(table)
    if np.all(order[1:] > order[:-1]):
        return table
    columns = table.columns
    del table
    return _take(columns, order)


def _in_feed_order(column: pa.ChunkedArray, codes: np.ndarray) -> bool:
    """Whether the rows are in time order and no symbol has two ticks at one instant: then grouping them by
    symbol, keeping their order, sorts them, with no ties to break. Checked chunk by chunk, without a copy."""
    last, offset, tied = None, 0, []  # tied: rows whose next row has the same timestamp
    for chunk in column.chunks:
        if len(chunk):
            stamps = _numpy(chunk.cast(pa.int64()))
            if (last is not None and stamps[0] < last) or np.any(stamps[1:] < stamps[:-1]):
                return False
            if last == stamps[0]:
                tied.append([offset - 1])
            tied.append(offset + np.flatnonzero(stamps[1:] == stamps[:-1]))
            last = stamps[-1]
        offset += len(chunk)
    tied = np.concatenate(tied) if tied else np.zeros(0, np.int64)
    if not len(tied):
        return True
    # ticks of different symbols may share an instant; a symbol's own ticks may not
    rows = np.unique(np.concatenate([tied, tied + 1]))
    new_run = np.ones(len(rows), dtype=bool)
    new_run[1:] = (rows[1:] != rows[:-1] + 1) | ~np.isin(rows[:-1], tied)
    keys = np.cumsum(new_run) * (int(codes.max()) + 1) + codes[rows]
    return len(np.unique(keys)) == len(keys)


_BLOCK_ROWS = 1 << 16  # rows reordered at a time when grouping by symbol (about a parsed CSV block)
_MAX_PIECES = 1 << 12  # runs (block x symbol) per column at most: many symbols make the blocks larger


def _block_bounds(column: pa.ChunkedArray, symbols: int) -> np.ndarray:
    """Row offsets that cut a table into blocks: whole chunks of ``column``, merged up to a minimum size."""
    rows = len(column)
    least = max(_BLOCK_ROWS, -(-rows * symbols // _MAX_PIECES))
    bounds, size = [0], 0
    for chunk in column.chunks:
        size += len(chunk)
        if size >= least:
            bounds.append(bounds[-1] + size)
            size = 0
    if size or len(bounds) == 1:
        bounds.append(rows)
    return np.array(bounds, dtype=np.int64)


def _blocks(column: pa.ChunkedArray, bounds: np.ndarray) -> list[pa.Array]:
    """``column`` cut at ``bounds``: zero-copy where a block is one chunk (or a slice of one)."""
    out = []
    for lo, hi in zip(bounds, bounds[1:]):
        piece = column.slice(int(lo), int(hi - lo))
        out.append(piece.chunk(0) if piece.num_chunks == 1 else piece.combine_chunks())
    return out


def _group_by_symbol(blocks: dict[str, list[pa.Array]], codes: np.ndarray, bounds: np.ndarray,
                     symbols: pa.Array) -> pa.Table:
    """Rows grouped by symbol code, stably: each block is reordered on its own (while it is in cache) and its
    runs are chained per symbol. The lists in ``blocks`` are emptied as they go, releasing each source block."""
    count = len(symbols)
    local = []
    for lo, hi in zip(bounds, bounds[1:]):
        block = codes[lo:hi]
        order = np.argsort(block.astype(np.int16), kind="stable")  # a radix sort
        local.append((_arrow(order.astype(np.int32)), np.cumsum(np.bincount(block, minlength=count))))

    def group(name: str) -> pa.ChunkedArray:
        pieces: list[list[pa.Array]] = [[] for _ in range(count)]
        column = blocks[name]
        for i, (order, ends) in enumerate(local):
            block, column[i] = column[i].take(order), None
            start = 0
            for symbol, end in enumerate(ends):
                if end > start:
                    pieces[symbol].append(block.slice(start, end - start))
                start = end
        return pa.chunked_array([p for runs in pieces for p in runs], SCHEMA.field(name).type)

    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        grouped = dict(zip(blocks, pool.map(group, list(blocks))))
    symbol = np.repeat(np.arange(count, dtype=np.int32), np.bincount(codes, minlength=count))
    grouped["symbol"] = pa.DictionaryArray.from_arrays(_arrow(symbol), symbols)
    return pa.Table.from_arrays([grouped[name] for name in RAW_COLUMNS], schema=SCHEMA)


def _take(columns: list[pa.ChunkedArray], order: np.ndarray) -> pa.Table:
    """The columns of a :data:`SCHEMA` table reordered, two at a time (Arrow's take is one thread). ``columns`` is
    emptied as it goes: each source column is released once taken, so the copy costs a column, not a table."""
    indices = _arrow(order.astype(np.int32) if len(order) < 1 << 31 else order)

    def take(i: int) -> pa.ChunkedArray:
        column, columns[i] = columns[i], None
        return column.take(indices)

    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        return pa.Table.from_arrays(list(pool.map(take, range(len(columns)))), schema=SCHEMA)


# Sizes repeat a lot within a day (dictionary pages); prices compress better plain under zstd than as
# dictionaries; timestamps rise within a symbol (deltas).
# Statistics only on the sort keys, the columns a reader can prune row groups by; on the others they cost
# time and serve no one.
_PARQUET_OPTIONS = {
    "compression": "zstd",
    "row_group_size": 1 << 20,
    "use_dictionary": ["symbol", "side", "size"],
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

