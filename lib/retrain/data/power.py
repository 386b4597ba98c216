"""UCI "Individual household electric power consumption" files: reader and sample generator.

The real file (``household_power_consumption.txt``) is ``;``-separated with a header, ``Date`` as d/m/yyyy
(day and month not zero-padded), ``Time`` as hh:mm:ss, and seven numeric columns; ``?`` marks a missing
reading (on such rows the last field is empty). The reader is tolerant of what the real file holds (``?``,
empty fields on missing rows, blank lines, CRLF, a missing final newline) and strict about what it must not
hold: a different header or delimiter, non-numeric values, short or long rows, unparseable dates.
"""

from __future__ import annotations

import io
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from retrain import storage
from retrain.errors import DataFormatError

RAW_COLUMNS = [
    "Date",
    "Time",
    "Global_active_power",
    "Global_reactive_power",
    "Voltage",
    "Global_intensity",
    "Sub_metering_1",
    "Sub_metering_2",
    "Sub_metering_3",
]
NUMERIC = RAW_COLUMNS[2:]
# curated column names (lower-case, as stored in the snapshot)
COLUMNS = ["timestamp"] + [c.lower() for c in NUMERIC]
SCHEMA = pa.schema([("timestamp", pa.timestamp("s"))] + [(c, pa.float64()) for c in COLUMNS[1:]])
SCHEMA_VERSION = 1
HEADER = ";".join(RAW_COLUMNS)


def _check_header(file: str, first_line: str) -> None:
    header = first_line.lstrip("\ufeff").rstrip("\r\n")
    if ";" not in header:
        for delimiter in (",", "\t", "|"):
            if delimiter in header:
                raise DataFormatError(file, "fields must be separated by ';'", f"header separated by {delimiter!r}: {header[:120]!r}")
        raise DataFormatError(file, f"first line must be the header {HEADER!r}", repr(header[:120]))
    names = header.split(";")
    if names != RAW_COLUMNS:
        missing = [c for c in RAW_COLUMNS if c not in names]
        extra = [c for c in names if c not in RAW_COLUMNS]
        detail = []
        if missing:
            detail.append(f"missing {missing}")
        if extra:
            detail.append(f"unexpected {extra}")
        if not detail:
            detail.append(f"columns in order {names}")
        raise DataFormatError(file, f"header must be {HEADER!r}", "; ".join(detail))


def _arrow_error(file: str, exc: Exception) -> DataFormatError:
    message = str(exc).splitlines()[0]
    if "Expected" in message and "columns" in message:
        return DataFormatError(file, f"every row must have {len(RAW_COLUMNS)} ';'-separated fields (truncated or malformed line)", message)
    if "conversion error" in message or "invalid value" in message:
        return DataFormatError(file, "numeric columns must hold numbers or '?'", message)
    return DataFormatError(file, "file must be valid ';'-separated text", message)


def read_power_bytes(data: bytes, file: str) -> pa.Table:
    """Parse the raw bytes of one power file into the curated schema (see :data:`SCHEMA`)."""
    if not data.strip():
        raise DataFormatError(file, "file must not be empty", f"{len(data)} bytes")
    first_newline = data.find(b"\n")
    first_line = (data if first_newline < 0 else data[:first_newline]).decode("utf-8", errors="replace")
    _check_header(file, first_line)
    body = b"" if first_newline < 0 else data[first_newline + 1 :]
    if not body.strip():
        raise DataFormatError(file, "file must contain at least one data row", "header only")
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(use_threads=True, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=";", ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                column_types={"Date": pa.string(), "Time": pa.string(), **{c: pa.float64() for c in NUMERIC}},
                null_values=["?", ""],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise _arrow_error(file, exc) from None
    stamp = pc.binary_join_element_wise(table["Date"], table["Time"], " ")
    parsed = pc.strptime(stamp, format="%d/%m/%Y %H:%M:%S", unit="s", error_is_null=True)
    if parsed.null_count:
        bad = pc.index(pc.is_null(parsed), True).as_py()
        raise DataFormatError(
            file,
            "Date must be d/m/yyyy and Time hh:mm:ss",
            f"data row {bad + 1}: {stamp[bad].as_py()!r}",
        )
    # strptime takes a 2-digit %Y and rolls impossible days over (31/2 -> 3/3): each distinct Date must round-trip
    dates = pc.unique(table["Date"])
    day = pc.strptime(dates, format="%d/%m/%Y", unit="s", error_is_null=True)
    dmy = pc.extract_regex(dates, r"^(?P<d>[0-9]{1,2})/(?P<m>[0-9]{1,2})/(?P<y>[0-9]{4})$")
    same = [pc.equal(pc.struct_field(dmy, k).cast(pa.int64()), f(day)) for k, f in (("d", pc.day), ("m", pc.month), ("y", pc.year))]
    calendar = pc.fill_null(pc.and_(pc.and_(same[0], same[1]), same[2]), False)
    if not pc.all(calendar).as_py():
        bad_date = dates[pc.index(calendar, False).as_py()].as_py()
        row = pc.index(table["Date"], bad_date).as_py()
        raise DataFormatError(file, "Date must be d/m/yyyy and Time hh:mm:ss",
                              f"data row {row + 1}: {bad_date!r} is not a calendar date")
    for name in NUMERIC:
        column = table[name]
        not_finite = pc.fill_null(pc.invert(pc.is_finite(column)), False)
        if pc.any(not_finite).as_py():
            bad = pc.index(not_finite, True).as_py()
            raise DataFormatError(file, "numeric columns must hold numbers or '?'",
                                  f"data row {bad + 1}, column {name}: {column[bad].as_py()!r}")
    columns = [parsed] + [table[c] for c in NUMERIC]
    return pa.Table.from_arrays([c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns], schema=SCHEMA)


def read_power_file(location: str) -> pa.Table:
    """Read one power file (local path or URI) into the curated schema."""
    return read_power_bytes(storage.read_bytes(location), storage.name(location))


# ---------------------------------------------------------------------------------------------------------
# sample generator


def _ar1(rng: np.random.Generator, n: int, *, phi: float, sigma: float) -> np.ndarray:
    from scipy.signal import lfilter

    return lfilter([1.0], [1.0, -phi], rng.normal(0.0, sigma, n))


def generate_power(
    rows: int,
    *,
    start: datetime = datetime(2006, 12, 16, 17, 24),
    seed: int = 0,
    missing_runs: int = 3,
    level: float = 1.0,
) -> bytes:
    """A power file in the exact UCI format: ``rows`` one-minute readings from ``start``.

    Consumption follows daily (morning and evening peaks), weekly (weekends higher) and yearly (winter
    higher) cycles with noise; appliance events drive the three sub-meterings, which never exceed the
    household's total active energy. ``missing_runs`` short outages are written as ``?`` rows, as in the
    real file. ``level`` scales consumption (a different household, for a second batch).
    """
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    rng = np.random.default_rng(seed)
    minutes = np.arange(rows, dtype=np.int64)
    ts = np.datetime64(start, "m") + minutes
    minute_of_day = (ts - ts.astype("datetime64[D]")).astype(np.int64)
    hour = minute_of_day / 60.0
    weekday = ((ts.astype("datetime64[D]").astype(np.int64) + 3) % 7)  # 0 = Monday
    day_of_year = (ts.astype("datetime64[D]") - ts.astype("datetime64[Y]")).astype(np.int64)

    daily = 0.35 + 1.1 * np.exp(-((hour - 7.5) ** 2) / 2.0) + 1.6 * np.exp(-((hour - 20.0) ** 2) / 4.5)
    weekly = np.where(weekday >= 5, 1.25, 1.0)
    yearly = 1.0 + 0.35 * np.cos(2 * np.pi * (day_of_year - 15) / 365.25)
    # Persistent household activity: an hourly AR(1) (who is home, what runs) on top of a daily AR(1)
    # (weather, holidays), so recent hours predict the next one better than last week's same hour does.
    hour_index = minutes // 60
    day_index = (ts.astype("datetime64[D]") - ts[0].astype("datetime64[D]")).astype(np.int64)
    hourly_state = _ar1(rng, int(hour_index[-1]) + 1, phi=0.8, sigma=0.3)
    daily_state = _ar1(rng, int(day_index[-1]) + 1, phi=0.85, sigma=0.12)
    activity = hourly_state[hour_index] + daily_state[day_index] + rng.normal(0.0, 0.12, rows)
    base = np.minimum(1.8 * level * daily * weekly * yearly * np.exp(activity), 9.5)  # a 12 kVA supply

    # appliance events (Wh per minute): kitchen, laundry, water heater / air conditioning
    kitchen = np.where(rng.random(rows) < 0.03 * (daily / daily.max()), rng.uniform(10, 38, rows), 0.0)
    laundry = np.where(rng.random(rows) < 0.05, rng.uniform(1, 30, rows), np.where(rng.random(rows) < 0.3, 1.0, 0.0))
    heater = np.where(rng.random(rows) < 0.35 * yearly / 1.35, rng.uniform(1, 19, rows), 0.0)
    subs = np.round(np.stack([kitchen, laundry, heater]))
    other_wh = base * 1000.0 / 60.0 * rng.uniform(0.35, 0.6, rows)
    active_kw = np.round((subs.sum(axis=0) + other_wh) * 60.0 / 1000.0, 3)
    active_kw = np.maximum(active_kw, np.ceil(subs.sum(axis=0) * 60.0) / 1000.0)
    reactive_kw = np.round(np.clip(rng.gamma(1.5, 0.08, rows), 0.0, 1.39), 3)
    voltage = np.round(np.clip(240.8 + 1.5 * np.sin(2 * np.pi * hour / 24) + rng.normal(0, 2.5, rows), 224.0, 254.0), 2)
    intensity = np.round(np.hypot(active_kw, reactive_kw) * 1000.0 / voltage / 0.2) * 0.2

    missing = np.zeros(rows, dtype=bool)
    for _ in range(missing_runs if rows > 100 else 0):
        first = int(rng.integers(0, rows - 1))
        missing[first : first + int(rng.integers(1, 45))] = True

    days = ts.astype("datetime64[D]")
    unique_days, day_index = np.unique(days, return_inverse=True)
    day_text = np.array([f"{d.day}/{d.month}/{d.year}" for d in unique_days.astype(datetime)], dtype=object)
    time_text = np.array([f"{h:02d}:{m:02d}:00" for h in range(24) for m in range(60)], dtype=object)

    def fmt(values: np.ndarray, decimals: int) -> np.ndarray:
        text = np.char.mod(f"%.{decimals}f", values).astype(object)
        text[missing] = "?"
        return text

    sub3 = fmt(subs[2], 3)
    sub3[missing] = ""  # the real file leaves the last field empty on missing rows
    columns = [
        day_text[day_index],
        time_text[minute_of_day],
        fmt(active_kw, 3),
        fmt(reactive_kw, 3),
        fmt(voltage, 3),
        fmt(intensity, 3),
        fmt(subs[0], 3),
        fmt(subs[1], 3),
        sub3,
    ]
    out = io.StringIO()
    out.write(HEADER + "\n")
    block = 200_000
    for lo in range(0, rows, block):
        lines = [";".join(fields) for fields in zip(*(c[lo : lo + block] for c in columns))]
        out.write("\n".join(lines))
        out.write("\n")
    return out.getvalue().encode("ascii")


def quality_frame(table: pa.Table):
    """The curated table plus the derived columns the quality suite checks, as a pandas frame.

    ``step_seconds``: seconds since the previous reading (duplicates give 0, going backwards < 0);
    ``unmetered_wh``: active energy not seen by the sub-meters (``GAP*1000/60 - Σ sub-metering``);
    ``day_missing_fraction``: share of missing readings on that reading's calendar day.
    """
    seconds = table["timestamp"].cast(pa.timestamp("s")).cast(pa.int64())
    step = pc.pairwise_diff(seconds.combine_chunks()).cast(pa.float64())
    gap = table["global_active_power"]
    subs = pc.add(pc.add(table["sub_metering_1"], table["sub_metering_2"]), table["sub_metering_3"])
    unmetered = pc.subtract(pc.divide(pc.multiply(gap, 1000.0), 60.0), subs)
    day = table["timestamp"].cast(pa.date32()).combine_chunks().dictionary_encode()
    per_day = (
        pa.table({"day": day.indices, "missing": pc.is_null(gap.combine_chunks()).cast(pa.float64())})
        .group_by("day")
        .aggregate([("missing", "mean")])
        .sort_by("day")
    )
    fraction = pc.take(per_day["missing_mean"], day.indices)
    frame = table.append_column("step_seconds", step).append_column("unmetered_wh", unmetered)
    frame = frame.append_column("day_missing_fraction", fraction)
    return frame.to_pandas()
