"""The household power quality gate (expectations/household_power.json) on good and bad data."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from retrain import quality
from retrain.data import power
from retrain.errors import DataQualityError

DATASET = "household_power"
ROWS = 3 * 1440 + 100  # starts 16/12/2006 17:24: days 17/12 and 18/12 are complete
pytestmark = pytest.mark.usefixtures("repo_expectations")


@pytest.fixture(scope="module")
def raw() -> bytes:
    return power.generate_power(ROWS, seed=1)


@pytest.fixture(scope="module")
def good(raw) -> pa.Table:
    return power.read_power_bytes(raw, "good.txt")


def _gate(table: pa.Table, version: str = "test", report_dir=None) -> quality.GateReport:
    return quality.validate(DATASET, power.quality_frame(table), version=version,
                            report_dir=str(report_dir) if report_dir else None)


def _failures(table: pa.Table) -> tuple[DataQualityError, dict[tuple[str, str], dict]]:
    report = _gate(table, version="bad")
    assert not report.success
    with pytest.raises(DataQualityError) as info:
        quality.enforce(report)
    error = info.value
    assert error.dataset == DATASET and error.version == "bad"
    assert error.failures == report.failures
    return error, {(f["expectation"], f["column"]): f for f in error.failures}


def _set(table: pa.Table, column: str, rows, value) -> pa.Table:
    values = table[column].to_numpy(zero_copy_only=False).astype(float).copy()
    values[rows] = value  # NaN (a null read back as NaN, or set here) becomes null again: a '?' reading
    return table.set_column(table.schema.get_field_index(column), column,
                            pa.array(values, pa.float64(), from_pandas=True))


def _first_full_row(table: pa.Table) -> int:
    """A row with a reading (the generator writes a few outages)."""
    return int(np.flatnonzero(~np.isnan(table["global_active_power"].to_numpy(zero_copy_only=False)))[100])


# --------------------------------------------------------------------------------------------------------


def test_good_data_passes_and_writes_both_reports(good, tmp_path):
    report = _gate(good, version="v-good", report_dir=tmp_path / "quality")
    assert report.success, report.failures
    assert report.failures == []
    assert quality.enforce(report) is report
    assert report.evaluated == len(json.loads(quality.suite_path(DATASET).read_text())["expectations"])

    document = json.loads((tmp_path / "quality" / "quality_report.json").read_text())
    assert document["summary"]["verdict"] == "passed"
    assert document["summary"]["version"] == "v-good"
    assert document["summary"]["failed"] == 0
    assert len(document["results"]) == report.evaluated
    assert all(r["success"] for r in document["results"])

    markdown = (tmp_path / "quality" / "quality_report.md").read_text()
    assert "Verdict: PASSED" in markdown and "v-good" in markdown
    assert "❌" not in markdown
    assert markdown.count("✅") == report.evaluated
    assert report.summary()["markdown_path"] == str(tmp_path / "quality" / "quality_report.md")


def test_failed_gate_writes_reports_naming_the_failure(good, tmp_path):
    bad = _set(good, "voltage", _first_full_row(good), 300.0)
    report = _gate(bad, version="v-bad", report_dir=tmp_path)
    with pytest.raises(DataQualityError) as info:
        quality.enforce(report)
    assert info.value.report_path == str(tmp_path / "quality_report.md")
    assert str(tmp_path / "quality_report.md") in str(info.value)
    markdown = (tmp_path / "quality_report.md").read_text()
    assert "Verdict: FAILED" in markdown
    assert "| ❌ | `expect_column_max_to_be_between` | voltage |" in markdown and "300.0" in markdown
    document = json.loads((tmp_path / "quality_report.json").read_text())
    assert document["summary"]["verdict"] == "failed" and document["summary"]["failed"] == 1


def test_too_few_rows_fails(good):
    error, failures = _failures(good.slice(0, 1000))
    assert failures[("expect_table_row_count_to_be_between", "table")]["observed"] == 1000
    assert "observed: 1000" in str(error)


# --------------------------------------------------------------------------------------------------------
# one bad-data kind per test


def _day_of_question_marks(raw: bytes, day: str) -> bytes:
    """The raw file with every reading of calendar day ``day`` (d/m/yyyy) replaced by a real-format '?' row."""
    lines = raw.decode().split("\n")
    out = [
        f"{line.split(';')[0]};{line.split(';')[1]};?;?;?;?;?;?;" if line.startswith(day + ";") else line
        for line in lines
    ]
    return "\n".join(out).encode()


def test_a_whole_day_of_question_marks_fails():
    # 40 days, so one missing day (2.5%) stays inside the overall 3% budget: only the per-day rule trips
    raw = power.generate_power(40 * 1440, start=datetime(2007, 1, 1), seed=2)
    table = power.read_power_bytes(_day_of_question_marks(raw, "10/1/2007"), "outage.txt")
    assert table["global_active_power"].null_count >= 1440

    error, failures = _failures(table)

    failure = failures[("expect_column_max_to_be_between", "day_missing_fraction")]
    assert failure["observed"] == 1.0
    assert "no calendar day is entirely missing" in failure["rule"]
    assert "day_missing_fraction" in str(error) and "observed: 1.0" in str(error)
    assert set(failures) == {("expect_column_max_to_be_between", "day_missing_fraction")}


def test_a_whole_day_of_question_marks_fails_on_a_short_file(raw):
    table = power.read_power_bytes(_day_of_question_marks(raw, "17/12/2006"), "outage.txt")
    _, failures = _failures(table)
    assert failures[("expect_column_max_to_be_between", "day_missing_fraction")]["observed"] == 1.0


def test_duplicate_timestamps_fail(good):
    duplicated = pa.concat_tables([good.slice(0, 2000), good.slice(1999)])
    assert duplicated.num_rows == good.num_rows + 1

    error, failures = _failures(duplicated)

    failure = failures[("expect_column_min_to_be_between", "step_seconds")]
    assert failure["observed"] == 0.0
    assert "unique and strictly increasing" in failure["rule"]
    assert "step_seconds" in str(error) and "observed: 0.0" in str(error)


def test_timestamps_going_backwards_fail(good):
    swapped = pa.concat_tables([good.slice(0, 2000), good.slice(2001, 1), good.slice(2000, 1), good.slice(2002)])

    error, failures = _failures(swapped)

    failure = failures[("expect_column_min_to_be_between", "step_seconds")]
    assert failure["observed"] == -60.0
    assert "observed: -60.0" in str(error)


def test_timestamps_going_backwards_across_days_fail(good):
    # a later day's block pasted before an earlier one: backwards by a day
    reordered = pa.concat_tables([good.slice(1440), good.slice(0, 1440)])
    _, failures = _failures(reordered)
    assert failures[("expect_column_min_to_be_between", "step_seconds")]["observed"] < -86_000


def test_voltage_outside_the_band_fails(good):
    error, failures = _failures(_set(good, "voltage", _first_full_row(good), 300.0))
    failure = failures[("expect_column_max_to_be_between", "voltage")]
    assert failure["observed"] == 300.0
    assert "max_value=260" in failure["rule"]
    assert "voltage" in str(error) and "observed: 300.0" in str(error)
    assert set(failures) == {("expect_column_max_to_be_between", "voltage")}


def test_voltage_below_the_band_fails(good):
    _, failures = _failures(_set(good, "voltage", _first_full_row(good), 180.0))
    assert failures[("expect_column_min_to_be_between", "voltage")]["observed"] == 180.0


def test_negative_active_power_fails(good):
    row = _first_full_row(good)
    error, failures = _failures(_set(good, "global_active_power", row, -0.5))
    failure = failures[("expect_column_min_to_be_between", "global_active_power")]
    assert failure["observed"] == -0.5
    assert "active power is not negative" in failure["rule"]
    assert "global_active_power" in str(error) and "observed: -0.5" in str(error)


def test_sub_metering_larger_than_the_total_fails(good):
    row = _first_full_row(good)
    bad = _set(_set(good, "global_active_power", row, 1.0), "sub_metering_1", row, 500.0)
    others = good["sub_metering_2"][row].as_py() + good["sub_metering_3"][row].as_py()
    expected = 1.0 * 1000 / 60 - (500.0 + others)

    error, failures = _failures(bad)

    failure = failures[("expect_column_min_to_be_between", "unmetered_wh")]
    assert failure["observed"] == pytest.approx(expected)
    assert "never exceed the household's active energy" in failure["rule"]
    assert "unmetered_wh" in str(error) and f"observed: {failure['observed']}" in str(error)
    assert set(failures) == {("expect_column_min_to_be_between", "unmetered_wh")}


def test_too_many_missing_values_fail(good):
    # every 20th reading missing: 5% overall, no day entirely missing
    rows = np.arange(0, good.num_rows, 20)
    bad = good
    for column in power.COLUMNS[1:]:
        bad = _set(bad, column, rows, np.nan)
    non_null = 1 - bad["global_active_power"].null_count / bad.num_rows
    assert non_null < 0.96

    error, failures = _failures(bad)

    failure = failures[("expect_column_proportion_of_non_null_values_to_be_between", "global_active_power")]
    assert failure["observed"] == pytest.approx(non_null)
    assert "missing-value budget" in failure["rule"] and "min_value=0.97" in failure["rule"]
    assert f"observed: {failure['observed']}" in str(error)
    assert set(failures) == {("expect_column_proportion_of_non_null_values_to_be_between", "global_active_power")}


def test_every_failure_is_listed_at_once(good):
    row = _first_full_row(good)
    bad = _set(_set(good, "voltage", row, 300.0), "global_reactive_power", row + 1, -1.0)
    bad = pa.concat_tables([bad.slice(0, 10), bad.slice(9)])
    error, failures = _failures(bad)
    assert {("expect_column_max_to_be_between", "voltage"),
            ("expect_column_min_to_be_between", "global_reactive_power"),
            ("expect_column_min_to_be_between", "step_seconds")} <= set(failures)
    assert f"failed {len(error.failures)} expectation(s)" in str(error)


@pytest.fixture
def snapshot_table(retrain_home, tmp_path, raw) -> pa.Table:
    """The gate's real input: a committed snapshot read back from parquet, not the freshly parsed table."""
    from retrain import snapshots
    from retrain.ingest import landing
    from retrain.ingest import power as ingest

    source = tmp_path / "power.txt"
    source.write_bytes(raw)
    landing.land(DATASET, str(source))
    return snapshots.read_parquet(ingest.ingest_file("power.txt", "run_1").snapshot)


def test_gate_on_a_committed_snapshot(snapshot_table):
    report = _gate(snapshot_table)
    assert report.success, report.failures
    _, failures = _failures(pa.concat_tables([snapshot_table.slice(0, 2000), snapshot_table.slice(1999)]))
    assert failures[("expect_column_min_to_be_between", "step_seconds")]["observed"] == 0.0


def test_gate_on_a_committed_snapshot_reports_steps_in_seconds(snapshot_table):
    swapped = pa.concat_tables([snapshot_table.slice(0, 2000), snapshot_table.slice(2001, 1),
                                snapshot_table.slice(2000, 1), snapshot_table.slice(2002)])
    error, failures = _failures(swapped)
    assert failures[("expect_column_min_to_be_between", "step_seconds")]["observed"] == -60.0
    assert "observed: -60.0" in str(error)


def test_gate_timing_is_reported(good):
    report = _gate(good)
    assert 0 < report.seconds < 30
    assert report.summary()["verdict"] == "passed"


def test_generated_data_over_a_month_passes():
    table = power.read_power_bytes(power.generate_power(31 * 1440, start=datetime(2007, 6, 1), seed=5, level=0.8),
                                   "june.txt")
    report = _gate(table)
    assert report.success, report.failures
    assert table["timestamp"][-1].as_py() == datetime(2007, 6, 1) + timedelta(minutes=31 * 1440 - 1)
