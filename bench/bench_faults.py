"""The guarantees under real faults, at larger counts than the test suite, in one table.

This runs the fault tests themselves (the code the suite runs on every CI build: real processes killed, the
real MLflow server stopped, the real embedded stack), with the scenario sizes raised through
``RETRAIN_FAULT_<NAME>`` (see ``fault_scale`` in ``tests/conftest.py``). Each test records one row per scenario
through ``fault_report``; this script collects the rows and prints:

    scenario | fault | snapshots | trained or superseded | files lost | double champions | lost champion events |
    worst lag to trained (s)

Targets (issue: guarantees of the retrain chain): 0 snapshots left untrained after F, 0 landed files lost,
0 double champions, 0 lost champion events. A test that fails is listed under the table with its exit status;
its rows (recorded before its assertions) still show what was measured.

    .venv/bin/python bench/bench_faults.py                      # the sizes below
    .venv/bin/python bench/bench_faults.py --scale candidates=4 --only tests/lib/test_champion_moves.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCALES = {"candidates": 10, "burst": 8, "rounds": 3, "partitions": 365}
TESTS = [
    "tests/lib/test_champion_moves.py",
    "tests/lib/test_ingest_power.py::test_same_content_under_two_names_at_once_is_one_snapshot_naming_both",
    "tests/e2e/test_freshness_stack.py",
    "tests/e2e/test_tick_backfills.py",
    "tests/e2e/test_stack_processes.py",
]
COLUMNS = [("scenario", "scenario"), ("fault", "fault"), ("snapshots", "snapshots"),
           ("trained_or_superseded", "trained or superseded"), ("files_lost", "files lost"),
           ("double_champions", "double champions"), ("lost_champion_events", "lost champion events"),
           ("worst_lag_s", "worst lag to trained (s)"), ("more", "more")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", action="append", default=[], metavar="NAME=N",
                        help=f"override a scenario size (defaults: {SCALES})")
    parser.add_argument("--only", action="append", metavar="TEST", help="run only these test files or ids")
    args = parser.parse_args()
    scales = dict(SCALES)
    for item in args.scale:
        name, _, value = item.partition("=")
        if name not in SCALES or not value.isdigit():
            parser.error(f"--scale takes NAME=N with NAME in {list(SCALES)} (observed {item!r})")
        scales[name] = int(value)
    tests = [t for t in (args.only or TESTS) if (REPO / t.split("::")[0]).exists()]

    report = Path(tempfile.mkdtemp(prefix="bench-faults-")) / "rows.jsonl"
    env = os.environ | {"RETRAIN_FAULT_REPORT": str(report)} | {f"RETRAIN_FAULT_{k.upper()}": str(v)
                                                                 for k, v in scales.items()}
    print(f"sizes: {scales}; load average {os.getloadavg()[0]:.2f} (2-core box)", flush=True)
    started = time.monotonic()
    outcome = subprocess.run([sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider",
                              "-o", "addopts=", "--timeout", "3600"], cwd=REPO, env=env,
                             capture_output=True, text=True)
    rows = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    known = {key for key, _ in COLUMNS}
    for row in rows:  # scenario-specific counts (events, trainings, processes left, ...)
        row["more"] = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in row.items() if k not in known)

    widths = [max(len(title), *(len(str(r.get(key, ""))) for r in rows)) for key, title in COLUMNS]
    print("\n| " + " | ".join(title.ljust(w) for (_, title), w in zip(COLUMNS, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(row.get(key, "")).ljust(w) for (key, _), w in zip(COLUMNS, widths)) + " |")
    bad = [r for r in rows if any(r.get(k) not in (0, "-", None) for k in
                                  ("files_lost", "double_champions", "lost_champion_events"))
           or (isinstance(r.get("trained_or_superseded"), int) and r.get("trained_or_superseded") != r.get("snapshots"))
           or r.get("processes_left", 0) or r.get("trained_twice", 0)]
    print(f"\n{len(rows)} scenario(s) in {time.monotonic() - started:.0f} s; targets missed in {len(bad)}")
    summary = [line for line in outcome.stdout.splitlines() if " passed" in line or " failed" in line or "FAILED" in line]
    print("pytest: " + ("; ".join(summary[-5:]) or outcome.stdout[-2000:]) + f" (exit {outcome.returncode})")
    return 0 if outcome.returncode == 0 and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
