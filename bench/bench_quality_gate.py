"""Quality gate cost: the Great Expectations suite vs a hand-written pyarrow.compute pass of the same rules.

How it is measured
------------------
1. ``retrain.data.power.generate_power(2_000_000)`` makes a UCI-format file in memory (not timed), parsed
   with ``read_power_bytes`` into the curated Arrow table (timed once, for context).
2. ``retrain.data.power.quality_frame(table)`` builds the pandas frame the suite validates: the curated
   columns plus the derived ``step_seconds``, ``unmetered_wh`` and ``day_missing_fraction`` (median of
   ``REPEATS``; reported separately as the *derived-column build*).
3. GX is warmed up with its import excluded: ``retrain.quality._gx()`` (import + ephemeral context) and
   ``load_suite("household_power")``; the first ``validate`` call is reported on its own, then
   ``retrain.quality.validate("household_power", frame, version="bench")`` is timed ``REPEATS`` times
   (median), without reports, and once more with ``report_dir`` set (what the DAG's gate task does: it also
   writes the JSON and Markdown reports).
4. The pyarrow pass starts from the same curated *Arrow table* and, inside the timed region, computes the
   three derived columns with pyarrow.compute (the same operations as ``quality_frame``, without the
   ``to_pandas``), then evaluates every rule of ``expectations/household_power.json`` (column list, row
   count >= 1440, timestamp/float types, non-null proportion of global_active_power >= 0.97, max
   day_missing_fraction <= 0.99, min step_seconds >= 1, the min/max bounds, min unmetered_wh >= -1).
   Median of ``REPEATS``. The rules are read from the suite file, so both sides check exactly the same
   thing, and the per-rule verdicts and observed values of both are compared (a mismatch is printed).

Each timed function gets one untimed warm-up call first (except ``validate``, whose first call is reported).

The ratio is GX ``validate`` seconds / pyarrow-pass seconds. That ratio favours GX (its input frame is
already built), so two other views are printed: end to end ((``quality_frame`` + ``validate``) / pyarrow
pass) and rules only (``validate`` / the pyarrow rules on an Arrow table that already has the derived
columns).

Target: ratio <= 4x.

Run from the repo root: ``.venv/bin/python bench/bench_quality_gate.py`` (about 20-25 s on 2 cores, ~2 GB RAM).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROWS = 2_000_000
REPEATS = 5
TARGET_RATIO = 4.0


def timed(fn, repeats: int = REPEATS, warmup: bool = True):
    """(median seconds, all seconds, last result); one untimed call first unless ``warmup`` is False."""
    times, result = [], None
    if warmup:
        fn()
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times, result


# ---------------------------------------------------------------------------------------------------------
# the hand-written pyarrow pass


def arrow_derived(table):
    """The curated table plus the three derived columns, all in pyarrow (no pandas)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    seconds = table["timestamp"].cast(pa.int64()).combine_chunks()
    step = pc.pairwise_diff(seconds).cast(pa.float64())
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
    return (table.append_column("step_seconds", step)
            .append_column("unmetered_wh", unmetered)
            .append_column("day_missing_fraction", fraction))


def _pandas_dtype_name(arrow_type) -> str:
    """The dtype name pandas gives an Arrow column (what GX's type-list rule looks at)."""
    import pyarrow as pa

    if pa.types.is_timestamp(arrow_type):
        return f"datetime64[{arrow_type.unit}]"
    return arrow_type.to_pandas_dtype().__name__  # numpy scalar type, e.g. float64


def arrow_pass(table, expectations: list[dict]) -> list[dict]:
    """The whole hand-written gate: derived columns, then every rule of the suite."""
    return arrow_rules(arrow_derived(table), expectations)


def arrow_rules(frame, expectations: list[dict]) -> list[dict]:
    """Every rule of the suite on an Arrow table that already has the derived columns; one verdict per rule."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = frame.num_rows
    min_max: dict[str, tuple] = {}

    def stats(column: str):
        if column not in min_max:
            mm = pc.min_max(frame[column])
            min_max[column] = (mm["min"].as_py(), mm["max"].as_py())
        return min_max[column]

    def between(value, kw) -> bool:
        low, high = kw.get("min_value"), kw.get("max_value")
        return value is not None and (low is None or value >= low) and (high is None or value <= high)

    out = []
    for entry in expectations:
        kind, kw = entry["type"], entry.get("kwargs", {})
        column = kw.get("column", "table")
        if kind == "expect_table_columns_to_match_ordered_list":
            observed = frame.column_names
            ok = observed == kw["column_list"]
        elif kind == "expect_table_row_count_to_be_between":
            observed = rows
            ok = between(rows, kw)
        elif kind == "expect_column_values_to_be_in_type_list":
            observed = _pandas_dtype_name(frame.schema.field(column).type)
            ok = observed in kw["type_list"]
        elif kind == "expect_column_proportion_of_non_null_values_to_be_between":
            values = frame[column]
            missing = values.null_count
            if pa.types.is_floating(values.type):  # float32/float64: pandas (and so GX) also counts NaN as missing
                missing += pc.sum(pc.is_nan(values)).as_py() or 0
            observed = 1.0 - missing / rows if rows else 0.0
            ok = between(observed, kw)
        elif kind == "expect_column_min_to_be_between":
            observed = stats(column)[0]
            ok = between(observed, kw)
        elif kind == "expect_column_max_to_be_between":
            observed = stats(column)[1]
            ok = between(observed, kw)
        else:
            raise NotImplementedError(f"pyarrow pass has no rule for {kind}")
        out.append({"expectation": kind, "column": column, "observed": observed, "success": bool(ok)})
    return out


# ---------------------------------------------------------------------------------------------------------


def same_observed(gx_value, arrow_value) -> bool:
    if isinstance(arrow_value, float) or isinstance(gx_value, float):
        try:
            return math.isclose(float(gx_value), float(arrow_value), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    if isinstance(arrow_value, str) and isinstance(gx_value, str):
        # GX reports the first matching entry of the type list ("datetime64" for any datetime64[unit])
        return arrow_value == gx_value or arrow_value.startswith(gx_value)
    return gx_value == arrow_value


def main() -> int:
    tmp = tempfile.TemporaryDirectory(prefix="bench-quality-")
    os.environ["RETRAIN_HOME"] = str(Path(tmp.name) / "home")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from retrain.settings import reset_settings

    reset_settings()
    from retrain import quality
    from retrain.data import power

    print(f"quality gate benchmark: {ROWS:,} power rows, median of {REPEATS} (python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f})")
    started = time.perf_counter()
    data = power.generate_power(ROWS)
    print(f"  generate_power                         {time.perf_counter() - started:8.3f} s  ({len(data) / 1e6:.1f} MB, not part of the gate)")
    started = time.perf_counter()
    table = power.read_power_bytes(data, "bench.txt")
    print(f"  read_power_bytes                       {time.perf_counter() - started:8.3f} s  (parse, not part of the gate)")
    del data

    qf_median, qf_times, frame = timed(lambda: power.quality_frame(table), warmup=False)
    started = time.perf_counter()
    quality._gx()
    quality.load_suite("household_power")
    warm = time.perf_counter() - started
    started = time.perf_counter()
    first = quality.validate("household_power", frame, version="bench")
    first_s = time.perf_counter() - started
    gx_median, gx_times, report = timed(lambda: quality.validate("household_power", frame, version="bench"),
                                        warmup=False)
    with tempfile.TemporaryDirectory(prefix="bench-quality-report-") as report_dir:
        started = time.perf_counter()
        quality.validate("household_power", frame, version="bench", report_dir=report_dir)
        with_reports = time.perf_counter() - started

    expectations = json.loads(quality.suite_path("household_power").read_text())["expectations"]
    pa_median, pa_times, verdicts = timed(lambda: arrow_pass(table, expectations))
    derived_median, _, derived = timed(lambda: arrow_derived(table))
    rules_median, _, _ = timed(lambda: arrow_rules(derived, expectations))

    # both sides must agree rule by rule (GX returns its results in its own order: match on rule identity)
    by_key = {(r["expectation"], r["column"]): r for r in report.results}
    assert len(by_key) == len(report.results) == len(verdicts), "rules are not identified by (type, column)"
    mismatches = []
    for pa_r in verdicts:
        gx_r = by_key[(pa_r["expectation"], pa_r["column"])]
        if gx_r["success"] != pa_r["success"] or not same_observed(gx_r["observed"], pa_r["observed"]):
            mismatches.append((gx_r, pa_r))

    print(f"  quality_frame (derived columns+pandas) {qf_median:8.3f} s  (runs: {', '.join(f'{t:.3f}' for t in qf_times)})")
    print(f"    of which pyarrow derived columns     {derived_median:8.3f} s  (same ops without to_pandas)")
    print(f"  GX import + context + load_suite       {warm:8.3f} s  (excluded)")
    print(f"  GX validate, first call                {first_s:8.3f} s  (excluded; {first.evaluated} expectations, {first.verdict})")
    print(f"  GX validate                            {gx_median:8.3f} s  (runs: {', '.join(f'{t:.3f}' for t in gx_times)})")
    print(f"  GX validate + JSON/Markdown reports    {with_reports:8.3f} s  (one run, what the gate task does)")
    print(f"  pyarrow pass (derived cols + rules)    {pa_median:8.3f} s  (runs: {', '.join(f'{t:.3f}' for t in pa_times)})")
    print(f"    of which rules alone                 {rules_median:8.3f} s  (on the prebuilt derived Arrow table)")
    print(f"  verdicts: GX {report.verdict} {report.evaluated - len(report.failures)}/{report.evaluated}, "
          f"pyarrow {sum(v['success'] for v in verdicts)}/{len(verdicts)}; "
          f"rule-by-rule agreement: {'all rules agree' if not mismatches else f'{len(mismatches)} MISMATCHES'}")
    for gx_r, pa_r in mismatches:
        print(f"    MISMATCH {gx_r['expectation']}({gx_r['column']}): GX {gx_r['success']} {gx_r['observed']!r} "
              f"vs pyarrow {pa_r['success']} {pa_r['observed']!r}")
    ratio = gx_median / pa_median
    end_to_end = (qf_median + gx_median) / pa_median
    rules_ratio = gx_median / rules_median
    print()
    print(f"GX seconds:      {gx_median:.3f}")
    print(f"pyarrow seconds: {pa_median:.3f}")
    print(f"ratio GX/pyarrow: {ratio:.2f}x")
    print(f"  other views: end to end (quality_frame + GX) / pyarrow pass {end_to_end:.2f}x; "
          f"rules only (GX validate / pyarrow rules on prebuilt columns) {rules_ratio:.2f}x")
    print(f"  (load average {os.getloadavg()[0]:.2f} at the end; on 2 shared cores other work skews these numbers)")
    print(f"target: ratio <= {TARGET_RATIO:.0f}x -> {'MEETS TARGET' if ratio <= TARGET_RATIO else 'MISSES TARGET'}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
