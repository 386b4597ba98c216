"""The UCI household power reader and the sample generator, as a user of the files sees them."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow.compute as pc
import pytest

from retrain.data import power
from retrain.errors import DataFormatError

REAL_HEADER = (
    "Date;Time;Global_active_power;Global_reactive_power;Voltage;Global_intensity;"
    "Sub_metering_1;Sub_metering_2;Sub_metering_3"
)
# The first lines of household_power_consumption.txt, and one of its missing-reading lines.
REAL_ROWS = [
    "16/12/2006;17:24:00;4.216;0.418;234.840;18.400;0.000;1.000;17.000",
    "16/12/2006;17:25:00;5.360;0.436;233.630;23.000;0.000;1.000;16.000",
    "16/12/2006;17:26:00;5.374;0.498;233.290;23.000;0.000;2.000;17.000",
]
MISSING_ROW = "21/12/2006;11:23:00;?;?;?;?;?;?;"
NUMERIC = power.COLUMNS[1:]


def _file(*lines: str, newline: str = "\n", trailing: bool = True) -> bytes:
    return (newline.join(lines) + (newline if trailing else "")).encode()


# --------------------------------------------------------------------------------------------------------
# generator round trip


@pytest.fixture(scope="module")
def sample() -> bytes:
    return power.generate_power(3000, seed=7)


@pytest.fixture(scope="module")
def sample_table(sample):
    return power.read_power_bytes(sample, "sample.txt")


def test_generated_file_reads_back_with_the_curated_schema(sample, sample_table):
    assert sample_table.num_rows == 3000
    assert sample_table.schema == power.SCHEMA
    assert sample_table.column_names == power.COLUMNS


def test_generated_header_is_the_real_files_header(sample):
    assert sample.split(b"\n", 1)[0].decode() == REAL_HEADER
    assert power.HEADER == REAL_HEADER


def test_generated_timestamps_are_one_minute_apart_from_start(sample_table):
    seconds = sample_table["timestamp"].cast("int64").to_numpy()
    assert np.all(np.diff(seconds) == 60)
    assert sample_table["timestamp"][0].as_py() == datetime(2006, 12, 16, 17, 24)


def test_generated_missing_rows_are_question_marks_and_read_as_nulls(sample, sample_table):
    lines = sample.decode().splitlines()[1:]
    missing_lines = [i for i, line in enumerate(lines) if "?" in line]
    assert missing_lines, "the generator writes a few outages"
    for i in missing_lines:
        fields = lines[i].split(";")
        assert len(fields) == 9
        assert fields[2:8] == ["?"] * 6 and fields[8] == "", "like the real file: '?' and an empty last field"
    gap = sample_table["global_active_power"]
    assert gap.null_count == len(missing_lines)
    null_rows = np.flatnonzero(pc.is_null(gap).to_numpy(zero_copy_only=False))
    assert null_rows.tolist() == missing_lines
    for column in NUMERIC:  # a missing reading is missing in every column
        assert sample_table[column].null_count == len(missing_lines), column


def test_generated_values_are_physically_plausible(sample_table):
    frame = sample_table.to_pandas().dropna()
    assert frame["voltage"].between(224.0, 254.0).all()
    assert (frame["global_active_power"] > 0).all() and (frame["global_active_power"] < 15).all()
    assert frame["global_reactive_power"].between(0.0, 1.39).all()
    assert frame["global_intensity"].between(0.0, 70.0).all()
    for column in ("sub_metering_1", "sub_metering_2", "sub_metering_3"):
        assert (frame[column] >= 0).all()
        assert (frame[column] == frame[column].round()).all(), "sub-meterings are whole Wh, as in the real file"
    metered = frame[["sub_metering_1", "sub_metering_2", "sub_metering_3"]].sum(axis=1)
    active_wh = frame["global_active_power"] * 1000.0 / 60.0
    assert (metered <= active_wh + 1e-9).all(), "sub-meters never see more than the household's total"
    assert frame["global_active_power"].std() > 0.1, "consumption varies over the day"


def test_generated_dates_are_d_m_yyyy_without_zero_padding():
    data = power.generate_power(4, start=datetime(2006, 12, 31, 23, 58), seed=1)
    rows = data.decode().splitlines()[1:]
    assert [r.split(";")[:2] for r in rows] == [
        ["31/12/2006", "23:58:00"],
        ["31/12/2006", "23:59:00"],
        ["1/1/2007", "00:00:00"],
        ["1/1/2007", "00:01:00"],
    ]
    table = power.read_power_bytes(data, "newyear.txt")
    assert table["timestamp"][2].as_py() == datetime(2007, 1, 1, 0, 0)


def test_generator_is_deterministic_per_seed_and_level_scales_consumption():
    assert power.generate_power(500, seed=3) == power.generate_power(500, seed=3)
    assert power.generate_power(500, seed=3) != power.generate_power(500, seed=4)
    low = power.read_power_bytes(power.generate_power(2000, seed=3, level=1.0), "low.txt")
    high = power.read_power_bytes(power.generate_power(2000, seed=3, level=2.0), "high.txt")
    assert pc.mean(high["global_active_power"]).as_py() > 1.5 * pc.mean(low["global_active_power"]).as_py()


def test_generator_rejects_zero_rows():
    with pytest.raises(ValueError, match="rows must be at least 1"):
        power.generate_power(0)


# --------------------------------------------------------------------------------------------------------
# real-format lines


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("trailing", [True, False], ids=["final-newline", "no-final-newline"])
def test_real_file_lines_parse(newline, trailing):
    data = _file(REAL_HEADER, *REAL_ROWS, MISSING_ROW, newline=newline, trailing=trailing)
    table = power.read_power_bytes(data, "household_power_consumption.txt")
    assert table.schema == power.SCHEMA
    rows = table.to_pylist()
    assert rows[0] == {
        "timestamp": datetime(2006, 12, 16, 17, 24),
        "global_active_power": 4.216,
        "global_reactive_power": 0.418,
        "voltage": 234.84,
        "global_intensity": 18.4,
        "sub_metering_1": 0.0,
        "sub_metering_2": 1.0,
        "sub_metering_3": 17.0,
    }
    assert [r["timestamp"] for r in rows] == [
        datetime(2006, 12, 16, 17, 24),
        datetime(2006, 12, 16, 17, 25),
        datetime(2006, 12, 16, 17, 26),
        datetime(2006, 12, 21, 11, 23),
    ]
    assert rows[-1] == {"timestamp": datetime(2006, 12, 21, 11, 23), **{c: None for c in NUMERIC}}


def test_blank_lines_are_ignored():
    data = _file(REAL_HEADER, "", REAL_ROWS[0], "", "", REAL_ROWS[1], MISSING_ROW, "", newline="\r\n")
    table = power.read_power_bytes(data, "blank.txt")
    assert table.num_rows == 3
    assert table["global_active_power"].to_pylist() == [4.216, 5.360, None]


def test_single_digit_day_and_month():
    table = power.read_power_bytes(_file(REAL_HEADER, "1/2/2007;00:00:00;0.250;0.000;241.000;1.000;0.000;0.000;0.000"), "f.txt")
    assert table["timestamp"][0].as_py() == datetime(2007, 2, 1, 0, 0)


# --------------------------------------------------------------------------------------------------------
# bad input: DataFormatError naming the file, the rule and the observed value

GOOD = REAL_ROWS[0]
BAD_INPUTS = {
    "header-missing-column": (
        _file(";".join(power.RAW_COLUMNS[:-1]), GOOD),
        "header must be",
        "missing ['Sub_metering_3']",
    ),
    "header-renamed-column": (
        _file(REAL_HEADER.replace("Voltage", "Volts"), GOOD),
        "header must be",
        "unexpected ['Volts']",
    ),
    "comma-separated": (
        _file(REAL_HEADER.replace(";", ","), GOOD.replace(";", ",")),
        "fields must be separated by ';'",
        "header separated by ','",
    ),
    "tab-separated": (
        _file(REAL_HEADER.replace(";", "\t"), GOOD.replace(";", "\t")),
        "fields must be separated by ';'",
        "header separated by '\\t'",
    ),
    "non-numeric-value": (
        _file(REAL_HEADER, GOOD, REAL_ROWS[1].replace("233.630", "abc")),
        "numeric columns must hold numbers or '?'",
        "abc",
    ),
    "empty-file": (b"", "file must not be empty", "0 bytes"),
    "whitespace-only-file": (b"\r\n\n", "file must not be empty", "3 bytes"),
    "header-only": (_file(REAL_HEADER), "at least one data row", "header only"),
    "header-only-no-newline": (REAL_HEADER.encode(), "at least one data row", "header only"),
    "truncated-last-line": (
        _file(REAL_HEADER, *REAL_ROWS[:2], "16/12/2006;17:26:00;5.374;0.4", trailing=False),
        "every row must have 9 ';'-separated fields",
        "16/12/2006;17:26:00;5.374;0.4",
    ),
    "row-with-extra-field": (
        _file(REAL_HEADER, GOOD + ";1.000"),
        "every row must have 9 ';'-separated fields",
        "got 10",
    ),
    "iso-date": (
        _file(REAL_HEADER, GOOD, REAL_ROWS[1].replace("16/12/2006", "2006-12-16")),
        "Date must be d/m/yyyy and Time hh:mm:ss",
        "data row 2: '2006-12-16 17:25:00'",
    ),
    "day-out-of-range": (
        _file(REAL_HEADER, GOOD.replace("16/12/2006", "32/12/2006")),
        "Date must be d/m/yyyy",
        "32/12/2006",
    ),
    "bad-time": (
        _file(REAL_HEADER, GOOD.replace("17:24:00", "25:00:00")),
        "Time hh:mm:ss",
        "25:00:00",
    ),
    "missing-date": (
        _file(REAL_HEADER, GOOD.replace("16/12/2006", "?")),
        "Date must be d/m/yyyy",
        "'? 17:24:00'",
    ),
    "not-a-power-file": (b"hello world\n", "first line must be the header", "'hello world'"),
}


@pytest.mark.parametrize("data, rule, observed", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_raises_data_format_error(data, rule, observed):
    with pytest.raises(DataFormatError) as info:
        power.read_power_bytes(data, "landed_2026-01-01.txt")
    error = info.value
    message = str(error)
    assert error.file == "landed_2026-01-01.txt"
    assert message.startswith("landed_2026-01-01.txt: ")
    assert rule in error.rule and rule in message
    assert observed in error.observed and observed in message


def test_read_power_file_names_the_file_it_read(tmp_path):
    bad = tmp_path / "broken.txt"
    bad.write_bytes(_file(REAL_HEADER, "16/12/2006;17:24:00;x;0.418;234.840;18.400;0.000;1.000;17.000"))
    with pytest.raises(DataFormatError, match=r"^broken\.txt: numeric columns"):
        power.read_power_file(str(bad))
    good = tmp_path / "good.txt"
    good.write_bytes(_file(REAL_HEADER, *REAL_ROWS))
    assert power.read_power_file(str(good)).num_rows == 3


# --------------------------------------------------------------------------------------------------------
# strict about non-numeric values and impossible dates (pyarrow alone would accept 'nan' and roll 31/2 over)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_and_inf_text_is_not_a_reading(value):
    with pytest.raises(DataFormatError):
        power.read_power_bytes(_file(REAL_HEADER, GOOD.replace("234.840", value)), "f.txt")


def test_two_digit_year_is_rejected():
    with pytest.raises(DataFormatError):
        power.read_power_bytes(_file(REAL_HEADER, GOOD.replace("16/12/2006", "16/12/06")), "f.txt")


@pytest.mark.parametrize("date", ["31/2/2007", "29/2/2007", "31/4/2007"])
def test_impossible_calendar_date_is_rejected(date):
    with pytest.raises(DataFormatError):
        power.read_power_bytes(_file(REAL_HEADER, GOOD.replace("16/12/2006", date)), "f.txt")
