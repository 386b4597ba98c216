"""Household power as a growing series: 24 monthly arrivals, then training on a 365-day window.

How it is measured
------------------
Everything runs in subprocesses with an isolated ``RETRAIN_HOME`` in a temp dir; each child is reaped with
``os.wait4``, whose ``rusage.ru_maxrss`` is that child's own peak RSS (this process stays small, so no child
inherits a high-water mark from it).

1. Ingest child: for each of 24 consecutive calendar months from January 2007, ``retrain.samples.power``
   writes one month of one household's one-minute readings in the UCI format (28 to 31 days: 40,320 to
   44,640 rows); the file is landed with ``retrain.ingest.landing.land`` and ingested with
   ``retrain.ingest.power.ingest_file`` (the ``ingest_power`` DAG's work). Timed per arrival
   (``time.perf_counter``, ingest only): claim, parse, merge into the series, write the touched month shards,
   commit the manifest, archive. Bytes written per arrival: the new shards plus the manifest and head pointer
   (the folder sizes before and after). Target: flat, i.e. the median of the last 5 arrivals is at most 1.5x
   the median of the first 5, and bytes per arrival do not grow with the series.
2. Training child (a fresh interpreter, like an Airflow task process): the ``tabular_ml_training`` DAG's
   steps ``gate`` -> ``prepare`` -> ``train`` -> ``evaluate`` on the head snapshot's event extra (24 months,
   about 1.05 M readings) with the repo's configs: ``window_days: 365``. Peak RSS of the process (target:
   < 1 GB) and wall time per step; the prepare step reports how many readings the window read.

Run from the repo root: ``.venv/bin/python bench/bench_power_growth.py [--months N]`` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_RSS_MB = 1024
FLAT = 1.5

CHILD_INGEST = textwrap.dedent(
    """
    import calendar, json, os, sys, time
    from datetime import datetime
    from pathlib import Path
    from retrain import samples, settings
    from retrain.ingest import landing, power
    settings.reset_settings()
    months, folder = int(sys.argv[1]), Path(sys.argv[2])
    curated = Path(settings.get_settings().data_root) / "curated" / "household_power"

    def size():
        return sum(p.stat().st_size for p in curated.rglob("*") if p.is_file()) if curated.exists() else 0

    out = []
    for i in range(months):
        year, month = 2007 + i // 12, i % 12 + 1
        days = calendar.monthrange(year, month)[1]
        name = f"power-{year}-{month:02d}.txt"
        samples.power(str(folder / name), days=days, start=datetime(year, month, 1), seed=7)
        landing.land("household_power", str(folder / name))
        before = size()
        started = time.perf_counter()
        result = power.ingest_file(name, f"bench_{i}")
        seconds = time.perf_counter() - started
        arrival = result.snapshot.manifest["arrival"]
        out.append({"month": f"{year}-{month:02d}", "days": days, "seconds": seconds, "bytes": size() - before,
                    "rows_added": arrival["rows_added"], "series_rows": result.snapshot.rows,
                    "shards": len(result.snapshot.manifest["files"])})
        (folder / name).unlink()
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"arrivals": out, "event": result.snapshot.event_extra() | {"dataset": "household_power"}}))
    """
)

CHILD_TRAIN = textwrap.dedent(
    """
    import json, sys, time
    from retrain import settings
    from retrain.workloads import tabular
    settings.reset_settings()
    event, work = json.loads(sys.argv[1]), sys.argv[2]
    steps = {}
    cfg = tabular.dataset_config("household_power")
    for name, call in (("gate", lambda: tabular.gate(event, cfg, work)), ("prepare", lambda: tabular.prepare(event, cfg, work)),
                       ("train", lambda: tabular.train(event, cfg, work)),
                       ("evaluate", lambda: tabular.evaluate(event, cfg, work))):
        started = time.perf_counter()
        result = call()
        steps[name] = {"seconds": round(time.perf_counter() - started, 2)}
        if name == "prepare":
            steps[name]["window"] = result["window"]
        if name == "evaluate":
            steps[name]["test_rmse"] = result["test_rmse"]
    print(json.dumps(steps))
    """
)


def _child(code: str, args: list[str], env: dict) -> tuple[dict, float]:
    process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, env=env, cwd=REPO,
                               text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child failed ({os.waitstatus_to_exitcode(status)})")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, RETRAIN_HOME=str(Path(tmp) / "home"), PYTHONUNBUFFERED="1")
        env.pop("RETRAIN_DATA_ROOT", None)
        files = Path(tmp) / "files"
        files.mkdir()
        ingested, ingest_rss = _child(CHILD_INGEST, [str(args.months), str(files)], env)
        arrivals = ingested["arrivals"]
        print(f"{'month':8} {'days':>4} {'ingest s':>9} {'bytes written':>14} {'series rows':>12} {'shards':>6}")
        for a in arrivals:
            print(f"{a['month']:8} {a['days']:>4} {a['seconds']:>9.3f} {a['bytes']:>14,} {a['series_rows']:>12,} {a['shards']:>6}")
        k = min(5, len(arrivals) // 2)
        first = statistics.median(a["seconds"] for a in arrivals[:k])
        last = statistics.median(a["seconds"] for a in arrivals[-k:])
        first_b = statistics.median(a["bytes"] for a in arrivals[:k])
        last_b = statistics.median(a["bytes"] for a in arrivals[-k:])
        print(f"\ningest time, median of the first {k}: {first:.3f} s, of the last {k}: {last:.3f} s "
              f"(ratio {last / first:.2f}; target <= {FLAT}: {'met' if last <= FLAT * first else 'MISSED'})")
        print(f"bytes written, median of the first {k}: {first_b:,.0f}, of the last {k}: {last_b:,.0f} "
              f"(ratio {last_b / first_b:.2f}); ingest process peak RSS {ingest_rss:.0f} MB")

        steps, train_rss = _child(CHILD_TRAIN, [json.dumps(ingested["event"]), str(Path(tmp) / "work")], env)
        window = steps["prepare"]["window"]
        print(f"\ntraining on the {window['days']}-day window {window['start']} .. {window['end']} "
              f"({window['readings']:,} of {arrivals[-1]['series_rows']:,} readings):")
        for name, step in steps.items():
            print(f"  {name:9} {step['seconds']:>7.2f} s")
        print(f"  test RMSE {steps['evaluate']['test_rmse']:.4f} kW")
        print(f"training process peak RSS {train_rss:.0f} MB (target < {TARGET_RSS_MB} MB: "
              f"{'met' if train_rss < TARGET_RSS_MB else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
