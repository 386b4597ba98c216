"""The strict, fast reader of raw tick files (CSV or parquet) and the partition normaliser.

The raw schema and its rules are in :mod:`retrain.data.ticks`. The reader is strict about structure and leaves
value rules to the quality gate; every refusal is a :class:`~retrain.errors.DataFormatError` naming the file,
the rule and the observed value.

Speed and memory: a file given by its location is streamed to ``pyarrow.csv``, which parses it block by block
on all cores, so a partition is held once, parsed, never also as raw text; a feed in time order (the usual
case) is sorted by grouping each block by symbol, without copying a column whole
(``bench/bench_tick_ingest.py`` measures both).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from retrain import storage
from retrain.data.ticks import (HEADER, LABELS, PRICES, RAW_COLUMNS, SCHEMA_V1 as SCHEMA, SIDES, arrow_array, arrow_strings,
                                numpy_view, partition_day)
from retrain.errors import DataFormatError

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
_NOT_BLANK = re.compile(rb"\S")  # finds the first non-blank byte without copying the file (bytes.strip would)


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
            return pa.DictionaryArray.from_arrays(arrow_array(codes), arrow_strings(list(SIDES)))
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
            rows = np.flatnonzero(lookup[numpy_view(chunk.indices)])
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
        np.take(lookup, numpy_view(chunks[i].indices), out=codes[offsets[i]:offsets[i + 1]])

    _map(remap, range(len(chunks)), len(codes))
    return pa.DictionaryArray.from_arrays(arrow_array(codes), arrow_strings(values))


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


def _unify(tables: list[pa.Table]) -> pa.Table:
    """Several files' tables as one: symbol dictionaries merged (still sorted), the other columns chained."""
    if len(tables) == 1:
        return tables[0]
    columns = []
    for name in RAW_COLUMNS:
        chunks = [chunk for t in tables for chunk in t[name].chunks]
        if name == "symbol":
            columns.append(_labels(pa.chunked_array(chunks, LABELS), name, "partition"))
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
    return numpy_view(array)


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
            stamps = numpy_view(chunk.cast(pa.int64()))
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
        local.append((arrow_array(order.astype(np.int32)), np.cumsum(np.bincount(block, minlength=count))))

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
    grouped["symbol"] = pa.DictionaryArray.from_arrays(arrow_array(symbol), symbols)
    return pa.Table.from_arrays([grouped[name] for name in RAW_COLUMNS], schema=SCHEMA)


def _take(columns: list[pa.ChunkedArray], order: np.ndarray) -> pa.Table:
    """The columns of a :data:`SCHEMA` table reordered, two at a time (Arrow's take is one thread). ``columns`` is
    emptied as it goes: each source column is released once taken, so the copy costs a column, not a table."""
    indices = arrow_array(order.astype(np.int32) if len(order) < 1 << 31 else order)

    def take(i: int) -> pa.ChunkedArray:
        column, columns[i] = columns[i], None
        return column.take(indices)

    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        return pa.Table.from_arrays(list(pool.map(take, range(len(columns)))), schema=SCHEMA)
