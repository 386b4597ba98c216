"""The strict, fast reader of raw tick files (CSV or parquet) and the partition normaliser.

The raw schema (v2) and its rules are in :mod:`retrain.data.ticks`. The reader is strict about structure and
leaves value rules to the quality gate; every refusal is a :class:`~retrain.errors.DataFormatError` naming the
file, the rule and the observed value (and the data row where there is one).

A feed whose clock carries no UTC offset declares its zone (``source_timezone`` in ``configs/feeds.yaml``):
its timestamps are then parsed as local time in that zone and converted to UTC, and a local time that a
daylight-saving change makes ambiguous or nonexistent is refused rather than guessed.

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
from retrain.data.ticks import (COLUMNS, HEADER, KINDS, LABELS, PRICES, RAW_OPTIONAL, RAW_REQUIRED, SCHEMA, SIDES,
                                TRADE_COLUMNS, arrow_array, arrow_strings, numpy_view, partition_day)
from retrain.errors import DataFormatError

_CSV_TYPES = {
    "timestamp": pa.timestamp("ns", tz="UTC"),
    "symbol": pa.binary(),  # labels are encoded after parsing: cheaper than the reader's per-block dictionaries
    "price": pa.float64(),
    "size": pa.float64(),  # a decimal quantity: "0.132" is a size
    "side": pa.binary(),
    "bid": pa.float64(),
    "ask": pa.float64(),
    "kind": pa.binary(),
    "trade_id": pa.binary(),  # mostly distinct values: parsed as bytes (half the time of text), checked once after
    "venue": pa.binary(),
}
_NAIVE = pa.timestamp("ns")  # how a feed with a source time zone is parsed (local time, then converted)
_BLOCK_SIZE = 1 << 22  # CSV bytes parsed per task: each reader thread holds about one block of raw text
_HEAD = 1 << 16  # bytes read first: enough to tell CSV from parquet and to check the header
_NOT_BLANK = re.compile(rb"\S")  # finds the first non-blank byte without copying the file (bytes.strip would)
_COLUMNS_RULE = (f"columns must be {','.join(RAW_REQUIRED)}, {','.join(TRADE_COLUMNS)} (all three or none) and "
                 f"optionally {','.join(RAW_OPTIONAL)}, in any order (schema change)")
_NO_ZONE_HINT = ("a vendor clock in local time declares its zone as feeds.ticks.source_timezone in "
                 "configs/feeds.yaml")
_TRADE_NEEDS = "a trade row needs price, size and side"
_QUOTE_CARRIES = "a quote row carries no price, size or side"


def _check_columns(file: str, names: list[str]) -> None:
    """Schema v2's columns, in any order: a missing, unknown or repeated one is a schema change."""
    present = set(names)
    needed = set(RAW_REQUIRED) | (set(TRADE_COLUMNS) if present & set(TRADE_COLUMNS) else set())
    missing = [c for c in COLUMNS if c in needed and c not in present]
    extra = [c for c in names if c not in COLUMNS]
    repeated = sorted({c for c in names if names.count(c) > 1})
    detail = []
    if missing:
        detail.append(f"missing {missing}")
    if extra:
        detail.append(f"unexpected {extra}" + (" (renamed?)" if missing else ""))
    if repeated:
        detail.append(f"repeated {repeated}")
    if detail:
        raise DataFormatError(file, _COLUMNS_RULE, "; ".join(detail))


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
    _check_columns(file, names)
    return names


def _column_text(source: bytes | str, column: str, kind: pa.DataType = pa.string()) -> pa.ChunkedArray | None:
    """One column of a CSV file re-read as text (error paths only); None if it cannot be."""
    try:
        with _open(source) as stream:
            return pacsv.read_csv(
                stream,
                convert_options=pacsv.ConvertOptions(include_columns=[column], column_types={column: kind},
                                                     strings_can_be_null=False),
            )[column]
    except pa.ArrowInvalid:
        return None


def _row_of(source: bytes | str, column: str, value: str) -> int | None:
    """Data row (0-based) holding ``value`` in ``column``."""
    text = _column_text(source, column)
    row = -1 if text is None else pc.index(text, value).as_py()
    return None if row < 0 else row


def _first_not_utf8(source: bytes | str, column: str) -> str:
    """Where ``column`` first holds bytes that are not UTF-8: ``data row N: b'...'``."""
    values = _column_text(source, column, pa.binary())
    for row, value in enumerate([] if values is None else values.to_pylist()):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return f"data row {row + 1}: {value!r}"
    return "invalid UTF-8"


def _csv_error(file: str, source: bytes | str, names: list[str], exc: Exception, zone: str | None) -> DataFormatError:
    message = str(exc).splitlines()[0]
    if "Expected" in message and "columns" in message:
        return DataFormatError(file, f"every row must have {len(names)} comma-separated fields", message)
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
            "timestamps must carry an explicit UTC offset ('Z' or '+00:00'): local time without a zone is ambiguous; "
            + _NO_ZONE_HINT,
            where or message,
        )
    if "expected no zone offset" in message:
        return DataFormatError(
            file,
            f"timestamps of a feed with source_timezone {zone} (configs/feeds.yaml) must carry no offset: they are "
            "local time in that zone, and an offset says the vendor clock is not what the settings declare",
            where or message,
        )
    if column == "timestamp":
        example = "2024-01-02T14:30:00.123456789" if zone else "2024-01-02T14:30:00.123456789Z"
        return DataFormatError(file, f"timestamp must be ISO-8601{' with an offset' if not zone else ''}, "
                                     f"e.g. {example}", where or message)
    if column in PRICES or column == "size":
        return DataFormatError(file, f"{column} must be a decimal number", where or message)
    if column == "trade_id" and "UTF8" in message:
        return DataFormatError(file, "trade_id must be UTF-8 text", _first_not_utf8(source, column))
    return DataFormatError(file, "file must be valid comma-separated text", where or message)


def _read_csv(stream: pa.NativeFile, head: bytes, source: bytes | str, file: str, zone: str | None) -> pa.Table | None:
    """Parse a CSV stream on all cores, one block at a time; labels stay raw bytes (encoded by _labels). None for a
    header and nothing else."""
    names = _header(file, head)
    end = head.find(b"\n")
    if end < 0 or (len(head) < _HEAD and not _NOT_BLANK.search(head, end + 1)):
        return None
    stream.seek(0)
    types = _CSV_TYPES if zone is None else {**_CSV_TYPES, "timestamp": _NAIVE}
    try:
        return pacsv.read_csv(
            stream,
            read_options=pacsv.ReadOptions(use_threads=True, block_size=_BLOCK_SIZE),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise _csv_error(file, source, names, exc, zone) from None


def _stringy(kind: pa.DataType) -> bool:
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    return text or (pa.types.is_dictionary(kind) and _stringy(kind.value_type))


_PARQUET_TYPES = {  # column: (accepts this Arrow type, what the refusal says is expected)
    "timestamp": (lambda t: pa.types.is_timestamp(t) and t.unit in ("ns", "us"),
                  "timestamp[ns, tz=UTC] or timestamp[us, tz=UTC]"),
    "price": (pa.types.is_float64, "float64"),
    "bid": (pa.types.is_float64, "float64"),
    "ask": (pa.types.is_float64, "float64"),
    "size": (lambda t: pa.types.is_integer(t) or pa.types.is_floating(t), "a number type (integer or float)"),
    **{name: (_stringy, "string") for name in ("symbol", "side", "kind", "trade_id", "venue")},
}
_MAY_BE_EMPTY = ["price", "size", "side", "trade_id", "venue"]  # an all-null column (type null) is fine here


def _read_parquet(stream: pa.NativeFile, file: str, zone: str | None) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream)
        schema = parquet.schema_arrow
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFormatError(file, "file must be a readable parquet file", str(exc).splitlines()[0]) from None
    _check_columns(file, schema.names)
    for name in schema.names:
        kind = schema.field(name).type
        accepts, expected = _PARQUET_TYPES[name]
        if not accepts(kind) and not (pa.types.is_null(kind) and name in _MAY_BE_EMPTY):
            raise DataFormatError(file, f"column {name} must be {expected} (schema change)", str(kind))
        if name == "timestamp" and kind.tz is None and zone is None:
            raise DataFormatError(
                file,
                "timestamp must be zone-aware UTC (timestamp[ns, tz=UTC] or timestamp[us, tz=UTC]): local time "
                "without a zone is ambiguous; " + _NO_ZONE_HINT,
                f"{kind} (no zone)",
            )
    try:
        table = parquet.read()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFormatError(file, "file must be a readable parquet file", str(exc).splitlines()[0]) from None
    for i, name in enumerate(table.column_names):
        if pa.types.is_null(table.schema.field(i).type):  # as the CSV parser types an empty column
            table = table.set_column(i, name, pa.nulls(table.num_rows, _CSV_TYPES[name]))
    return table


def _first(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.index(mask, True).as_py())


def _check_values(table: pa.Table, file: str) -> None:
    """Every field that must hold a value holds one, numbers are finite (on the raw table: nulls must be seen
    before labels are encoded). Price, size and side may be empty only on the quote rows a kind column names."""
    names = table.column_names
    required = set(RAW_REQUIRED) | {"kind"} | (set() if "kind" in names else set(TRADE_COLUMNS))
    for name in [c for c in COLUMNS if c in names and c in required]:
        column = table[name]
        if column.null_count:
            row = _first(pc.is_null(column))
            raise DataFormatError(file, "every field must hold a value", f"data row {row + 1}, column {name}: empty")
    for name in [c for c in ("price", "size", "bid", "ask") if c in names]:
        not_finite = pc.invert(pc.is_finite(table[name]))
        if pc.any(not_finite).as_py():
            row = _first(not_finite)
            raise DataFormatError(file, f"{name} must be a finite number",
                                  f"data row {row + 1}: {table[name][row].as_py()!r}")


def _utc(column: pa.ChunkedArray, zone: str | None, file: str, source: bytes | str | None) -> pa.ChunkedArray:
    """Timestamps as UTC nanoseconds; local times (only read with a zone) are converted from ``zone``, and one
    that a daylight-saving change makes ambiguous or nonexistent is refused, naming its row."""
    utc = SCHEMA.field("timestamp").type
    if column.type == utc:
        return column
    if column.type.tz is not None:
        return column.cast(pa.timestamp("ns", tz=column.type.tz)).cast(utc)
    local = column.cast(_NAIVE)
    try:
        return pc.assume_timezone(local, timezone=zone, ambiguous="raise", nonexistent="raise").cast(utc)
    except pa.ArrowInvalid:
        pass
    earliest = pc.assume_timezone(local, timezone=zone, ambiguous="earliest", nonexistent="earliest")
    latest = pc.assume_timezone(local, timezone=zone, ambiguous="latest", nonexistent="latest")
    row = _first(pc.not_equal(earliest, latest))
    try:
        pc.assume_timezone(local.slice(row, 1), timezone=zone, ambiguous="earliest", nonexistent="raise")
        rule = (f"a local timestamp in the feed's zone {zone} must name one instant: when daylight saving time ends "
                "the clocks go back and an hour of local times happens twice (ambiguous)")
    except pa.ArrowInvalid:
        rule = (f"a local timestamp in the feed's zone {zone} must exist: when daylight saving time starts the "
                "clocks go forward and an hour of local times never happens (nonexistent)")
    text = _column_text(source, "timestamp") if source is not None else None  # as the CSV file has it
    if text is not None:
        value = text[row].as_py()
    else:  # parquet: ISO-8601, with as many fractional digits as it needs
        whole, _, fraction = pc.strftime(local.slice(row, 1), "%Y-%m-%dT%H:%M:%S")[0].as_py().partition(".")
        value = whole + (f".{fraction.rstrip('0')}" if fraction.rstrip("0") else "")
    raise DataFormatError(file, rule, f"data row {row + 1}, column timestamp: {value!r}")


def _side_codes(column: pa.ChunkedArray) -> np.ndarray | None:
    """Indices into SIDES straight from one-byte CSV fields, in numpy; None if any field is not exactly B or S."""
    codes = np.empty(len(column), dtype=np.int32)
    at = 0
    for chunk in column.chunks:
        n = len(chunk)
        if n == 0:
            continue
        if chunk.null_count:
            return None
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
    "kind": ("kind must be 'trade' or 'quote'", lambda v: v in KINDS),
    "venue": ("venue must be text", lambda v: True),  # an empty venue is none (null)
}
_FIXED = {"side": list(SIDES), "kind": list(KINDS)}  # label columns whose dictionary never depends on the data


def _dictionary(codes: np.ndarray, values: list[str]) -> pa.DictionaryArray:
    """Codes into ``values`` as a dictionary array; a negative code is a null."""
    missing = codes < 0
    if not missing.any():
        return pa.DictionaryArray.from_arrays(arrow_array(codes), arrow_strings(values))
    codes = np.where(missing, 0, codes).astype(np.int32)
    validity = pa.py_buffer(np.packbits(~missing, bitorder="little"))
    indices = pa.Array.from_buffers(pa.int32(), len(codes), [validity, pa.py_buffer(codes)], int(missing.sum()))
    return pa.DictionaryArray.from_arrays(indices, arrow_strings(values))


# Nulls are read from validity bitmaps in numpy: ``to_numpy`` of an array with nulls, or a Python scalar handed
# to a compute function, imports pandas (a quarter of a second in a fresh worker; see retrain.data.ticks).


def _missing(array: pa.Array) -> np.ndarray:
    """Which rows of an array are null, as numpy booleans."""
    if not array.null_count:
        return np.zeros(len(array), dtype=bool)
    bitmap = array.buffers()[0]
    if bitmap is None:  # an array of type null
        return np.ones(len(array), dtype=bool)
    bits = np.unpackbits(np.frombuffer(bitmap, np.uint8), count=array.offset + len(array), bitorder="little")
    return bits[array.offset:] == 0


def _missing_rows(column: pa.ChunkedArray) -> np.ndarray:
    return np.concatenate([_missing(c) for c in column.chunks] or [np.zeros(0, dtype=bool)])


def _chunk_codes(chunk: pa.DictionaryArray) -> np.ndarray:
    """A dictionary chunk's indices as numpy; a null row gets ``len(dictionary)`` (one past the last value)."""
    indices = chunk.indices
    if not indices.null_count:
        return numpy_view(indices)
    width = indices.type.bit_width // 8
    values = np.frombuffer(indices.buffers()[1], np.dtype(f"i{width}"), len(indices), indices.offset * width)
    return np.where(_missing(indices), len(chunk.dictionary), values)


def _labels(column: pa.ChunkedArray, name: str, file: str) -> pa.DictionaryArray:
    """A text column (bytes, strings or dictionaries) as one dictionary array whose dictionary is sorted, so index
    order is value order and files agree; side's dictionary is always SIDES and kind's KINDS. Nulls stay null
    (an empty venue too).

    The rules (UTF-8, not empty, B or S, trade or quote) are checked on the distinct values; rows are looked up
    only on failure. The codes of every chunk are remapped in parallel straight into one buffer.
    """
    if name == "side" and pa.types.is_binary(column.type):
        codes = _side_codes(column)  # the common case, without hashing
        if codes is not None:
            return _dictionary(codes, _FIXED["side"])
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
            lookup = np.array([v in bad for v in values] + [False])
            rows = np.flatnonzero(lookup[_chunk_codes(chunk)])
            if len(rows):
                value = values[chunk.indices[int(rows[0])].as_py()]
                row = at + int(rows[0]) + 1
                if text[value] is None:
                    raise DataFormatError(file, f"{name} must be UTF-8 text", f"data row {row}: {value!r}")
                raise DataFormatError(file, rule, f"data row {row}: {text[value]!r}")
            at += len(chunk)
    values = _FIXED.get(name) or sorted(set(text.values()) - {""})
    position = {v: i for i, v in enumerate(values)}
    codes = np.empty(len(column), dtype=np.int32)
    offsets = np.cumsum([0] + [len(c) for c in chunks])

    def remap(i: int) -> None:
        lookup = np.array([position.get(text.get(v), -1) for v in raw[i]] + [-1], dtype=np.int32)
        np.take(lookup, _chunk_codes(chunks[i]), out=codes[offsets[i]:offsets[i + 1]])

    _map(remap, range(len(chunks)), len(codes))
    return _dictionary(codes, values)


def _kinds(table: pa.Table, file: str) -> pa.DictionaryArray:
    """Each row's kind (KINDS): from the kind column, else trade when the trade columns are there (the v1 shape),
    else quote. With a kind column a trade row must carry price, size and side, and a quote row none of them."""
    n, names = table.num_rows, table.column_names
    if "kind" not in names:
        return _dictionary(np.full(n, KINDS.index("trade" if "price" in names else "quote"), np.int32), list(KINDS))
    kind = _labels(table["kind"], "kind", file)
    trade = numpy_view(kind.indices) == KINDS.index("trade")
    if "price" not in names:
        if trade.any():
            row = int(np.argmax(trade))
            raise DataFormatError(file, _TRADE_NEEDS,
                                  f"data row {row + 1}, kind 'trade' in a file without price, size and side columns")
        return kind
    empty = {name: _missing_rows(table[name]) for name in TRADE_COLUMNS}
    first: tuple[int, str, str] | None = None  # the first offending (row, column, rule)
    for name in TRADE_COLUMNS:
        for rule, wrong in ((_TRADE_NEEDS, empty[name] & trade), (_QUOTE_CARRIES, ~empty[name] & ~trade)):
            if wrong.any() and (first is None or int(np.argmax(wrong)) < first[0]):
                first = (int(np.argmax(wrong)), name, rule)
    if first is not None:
        row, name, rule = first
        value = table[name][row].as_py()
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        shown = "empty" if value is None else repr(value)
        raise DataFormatError(file, rule,
                              f"data row {row + 1}, kind {KINDS[int(trade[row])]!r}, column {name}: {shown}")
    return kind


def _trade_ids(column: pa.ChunkedArray, file: str) -> pa.ChunkedArray:
    """Trade ids as strings (UTF-8, checked in one vectorised cast); an empty one (quoted in CSV, or in parquet)
    is none (null)."""
    if column.type != pa.string():
        try:
            column = column.cast(pa.string())
        except pa.ArrowInvalid:
            for row, value in enumerate(column.to_pylist()):  # the error path only: find the row
                if isinstance(value, bytes):
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError:
                        raise DataFormatError(file, "trade_id must be UTF-8 text", f"data row {row + 1}: {value!r}") from None
            raise
    chunks = []
    for chunk in column.chunks:
        n = len(chunk)
        if n > chunk.null_count:
            offsets = np.frombuffer(chunk.buffers()[1], np.int32, n + 1, chunk.offset * 4)
            empty = (offsets[1:] == offsets[:-1]) & ~_missing(chunk)
            if empty.any():
                keep = pa.py_buffer(np.packbits(~empty, bitorder="little"))
                chunk = pc.if_else(pa.Array.from_buffers(pa.bool_(), n, [None, keep]), chunk, pa.nulls(n, pa.string()))
        chunks.append(chunk)
    return pa.chunked_array(chunks, pa.string())


def _normalise(table: pa.Table, timestamp: pa.ChunkedArray, file: str) -> pa.Table:
    """Parsed columns in :data:`SCHEMA`: UTC nanosecond timestamps, decimal sizes, labels as sorted dictionaries;
    the columns a file leaves out are null (price, size and side of a quote-only feed; trade_id, venue)."""
    n, names = table.num_rows, table.column_names
    trades = "price" in names
    none = np.full(n, -1, np.int32)
    columns = {
        "timestamp": timestamp,
        "symbol": _labels(table["symbol"], "symbol", file),
        "price": table["price"] if trades else pa.nulls(n, pa.float64()),
        "size": table["size"].cast(pa.float64()) if trades else pa.nulls(n, pa.float64()),
        "side": _labels(table["side"], "side", file) if trades else _dictionary(none, _FIXED["side"]),
        "bid": table["bid"],
        "ask": table["ask"],
        "kind": _kinds(table, file),
        "trade_id": _trade_ids(table["trade_id"], file) if "trade_id" in names else pa.nulls(n, pa.string()),
        "venue": _labels(table["venue"], "venue", file) if "venue" in names else _dictionary(none, []),
    }
    return pa.Table.from_arrays([columns[name] for name in COLUMNS], schema=SCHEMA)


def _read(source: bytes | str, file: str, zone: str | None) -> pa.Table:
    with _open(source) as stream:
        head = stream.read(_HEAD)
        if len(head) < _HEAD and not _NOT_BLANK.search(head):
            raise DataFormatError(file, f"file must start with the header {HEADER!r}",
                                  f"empty file ({len(head)} bytes)")
        parquet = head[:4] == b"PAR1"
        table = _read_parquet(stream, file, zone) if parquet else _read_csv(stream, head, source, file, zone)
    if table is None or table.num_rows == 0:
        return SCHEMA.empty_table()
    _check_values(table, file)
    timestamp = _utc(table["timestamp"], zone, file, None if parquet else source)
    try:
        return _normalise(table, timestamp, file)
    except pa.ArrowInvalid as exc:
        raise DataFormatError(file, "values must fit the curated schema", str(exc).splitlines()[0]) from None


def read_tick_file(data: bytes, file: str, *, source_timezone: str | None = None) -> pa.Table:
    """Parse one raw tick file (CSV or parquet, told apart by content) into :data:`SCHEMA`, in file order.
    ``source_timezone`` (an IANA zone): the feed's timestamps carry no offset and are local time there."""
    return _read(data, file, source_timezone)


def read_tick_location(location: str, *, source_timezone: str | None = None) -> pa.Table:
    """Read one tick file (local path or URI) as :func:`read_tick_file` does, streamed: never held whole."""
    return _read(location, storage.name(location), source_timezone)


def _unify(tables: list[pa.Table]) -> pa.Table:
    """Several files' tables as one: symbol and venue dictionaries merged (still sorted), the other columns
    chained (side and kind have the same dictionary in every file)."""
    if len(tables) == 1:
        return tables[0]
    columns = []
    for name in COLUMNS:
        chunks = [chunk for t in tables for chunk in t[name].chunks]
        if name in ("symbol", "venue"):
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


_TIE_BREAKERS = [c for c in COLUMNS if c not in ("symbol", "timestamp")]


def sort_order(table: pa.Table) -> np.ndarray:
    """Row order by symbol, timestamp, then every other column (nulls after values): a total order, so the
    result is deterministic.

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
        others = [c for c in _TIE_BREAKERS if c in table.column_names]
        sub = table.take(pa.array(members)).select(others)
        keys = {"run": run_id}
        for name in others:  # labels by their codes: dictionaries are sorted, so code order is value order
            column = sub[name].combine_chunks()
            keys[name] = column.indices if pa.types.is_dictionary(column.type) else column
        resolved = pa.table({**keys, "row": members}).sort_by([(k, "ascending") for k in keys])  # nulls last
        order[positions] = resolved["row"].to_numpy()
    return order


def normalize_partition(files: list[tuple[str, bytes | str]], partition: str, *,
                        source_timezone: str | None = None) -> pa.Table:
    """Parse every file of a partition and return one table in :data:`SCHEMA`, sorted (see :func:`sort_order`).

    A file is ``(name, content)``, the content being its raw bytes or its location (local path or URI), which
    is streamed: raw files are parsed block by block, never held whole. Memory peaks near one parsed partition.
    ``source_timezone``: the feed's clock carries no offset and is local time in that IANA zone (converted to
    UTC); None: every timestamp must carry its offset.
    """
    partition_day(partition)
    tables = [_read(source, name, source_timezone) for name, source in sorted(files, key=lambda f: f[0])]
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
        same = {name: table[name] for name in COLUMNS if name != "symbol" and _same_everywhere(table[name])}
        blocks = {name: _blocks(table[name], bounds) for name in COLUMNS if name != "symbol" and name not in same}
        del table
        return _group_by_symbol(blocks, codes, bounds, symbols, same)
    order = sort_order(table)
    if np.all(order[1:] > order[:-1]):
        return table
    columns = table.columns
    del table
    return _take(columns, order)


def _same_everywhere(column: pa.ChunkedArray) -> bool:
    """Whether every row holds the same value, or none: any order of the rows leaves such a column as it is
    (the columns a feed does not send, kind without a kind column), so it is not reordered at all."""
    if column.null_count == len(column):
        return True
    if column.null_count or not pa.types.is_dictionary(column.type):
        return False
    values = set()  # each chunk's one value (chunks may have different dictionaries)
    for chunk in column.chunks:
        codes = numpy_view(chunk.indices)
        if len(codes):
            if codes.min() != codes.max():
                return False
            values.add(chunk.dictionary[int(codes[0])].as_py())
    return len(values) <= 1


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
                     symbols: pa.Array, same: dict[str, pa.ChunkedArray]) -> pa.Table:
    """Rows grouped by symbol code, stably: each block is reordered on its own (while it is in cache) and its
    runs are chained per symbol. The lists in ``blocks`` are emptied as they go, releasing each source block.
    The columns in ``same`` hold one value (or none) in every row and are kept as they are."""
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
    return pa.Table.from_arrays([same[name] if name in same else grouped[name] for name in COLUMNS], schema=SCHEMA)


def _take(columns: list[pa.ChunkedArray], order: np.ndarray) -> pa.Table:
    """The columns of a :data:`SCHEMA` table reordered, two at a time (Arrow's take is one thread). ``columns`` is
    emptied as it goes: each source column is released once taken, so the copy costs a column, not a table."""
    indices = arrow_array(order.astype(np.int32) if len(order) < 1 << 31 else order)

    def take(i: int) -> pa.ChunkedArray:
        column, columns[i] = columns[i], None
        return column if _same_everywhere(column) else column.take(indices)

    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        return pa.Table.from_arrays(list(pool.map(take, range(len(columns)))), schema=SCHEMA)
