"""An N-partition tick backfill end to end on the real embedded stack (N = BENCH_PARTITIONS, 30 by default).

Starts the stack (`retrain up`) in a temporary RETRAIN_HOME on free ports, lands N daily partitions at demo
density (not timed), then times `retrain backfill ticks FIRST LAST` until it returns and the training and
promotion runs it caused have settled. Prints the wall time, the ingest runs, the training runs created and
how many actually trained (the backfill policy allows one: the newest window), the newest-window lag (from
the newest partition's commit, its manifest's `created_at`, to the end of the MLflow run that trained that
window), and the peak RSS of the whole stack (every process of the stack's process groups, sampled each
second). Target: N partitions rebuilt, no more trainings than the policy allows, the newest window trained
within F (120 s) of its commit, under 5 minutes for 30 partitions on 2 cores.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "30"))
TICKS_PER_DAY = int(os.environ.get("BENCH_TICKS_PER_DAY", "20000"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _newest_window_lag(newest: str) -> float | None:
    """Seconds from the newest partition's commit to the end of the finished MLflow run that trained the window
    ending there; None while there is none."""
    from datetime import datetime

    from retrain import snapshots, tracking
    from retrain.workloads import timeseries

    snapshot = snapshots.load("ticks", "", newest)
    experiment = tracking.client().get_experiment_by_name(tracking.experiment_name(timeseries.WORKLOAD, "ticks"))
    if snapshot is None or experiment is None:
        return None
    committed = datetime.fromisoformat(snapshot.manifest["created_at"]).timestamp()
    runs = tracking.client().search_runs([experiment.experiment_id], filter_string=(
        f"attributes.status = 'FINISHED' and tags.`data.window_end` = '{newest}'"))
    return min(r.info.end_time / 1000 - committed for r in runs) if runs else None


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "RETRAIN_"))}
    env |= {"RETRAIN_HOME": str(home), "RETRAIN_AIRFLOW_PORT": str(_port()), "RETRAIN_MLFLOW_PORT": str(_port())}
    os.environ.update(env)
    retrain = [sys.executable, "-m", "retrain"]
    subprocess.run(retrain + ["up"], env=env, check=True, capture_output=True, timeout=300)
    try:
        import psutil

        from retrain import environment

        environment.apply(override=True)
        from retrain.data import tick_generator
        from retrain.ingest import landing
        from retrain.stack import AirflowApi

        first = date(2026, 2, 1)
        days = [(first + timedelta(days=i)).isoformat() for i in range(PARTITIONS)]
        staging = Path(tempfile.mkdtemp())
        for seed, day in enumerate(days):
            folder = staging / f"date={day}"
            folder.mkdir()
            table = tick_generator.generate_ticks(date.fromisoformat(day), ticks_per_day=TICKS_PER_DAY, seed=seed)
            (folder / "ticks.csv").write_bytes(tick_generator.to_csv_bytes(table))
            landing.land("ticks", str(folder))

        pids = [int(p.read_text()) for p in (home / "run").glob("*.pid")]
        peak = {"rss": 0}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                total = 0
                for proc in psutil.process_iter(["pid"]):
                    try:
                        if os.getpgid(proc.pid) in pids:
                            total += proc.memory_info().rss
                    except (psutil.Error, ProcessLookupError):
                        continue
                peak["rss"] = max(peak["rss"], total)
                time.sleep(1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        out = subprocess.run(retrain + ["backfill", "ticks", days[0], days[-1], "--max-active-runs", "3"],
                             env=env, capture_output=True, text=True, timeout=900)
        ingest_done = time.monotonic() - started
        api = AirflowApi()
        lag, trained_seen = None, None
        while True:  # let the triggered trainings and promotions settle
            training = api.runs("time_series_training")
            promotions = api.runs("promote_partitioned_models")
            settled = all(r["state"] in ("success", "failed") for r in training + promotions)
            lag = lag if lag is not None else _newest_window_lag(days[-1])
            trained_seen = trained_seen or (time.monotonic() if lag is not None else None)
            promoted = promotions or (trained_seen and time.monotonic() - trained_seen > 30)
            if (settled and lag is not None and promoted) or time.monotonic() - started > 900:
                break
            time.sleep(2)
        total = time.monotonic() - started
        stop.set()
        trained = 0
        for run in training:
            tis = api.get(f"dags/time_series_training/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]
            trained += any(t["task_id"] == "train" and t["state"] == "success" for t in tis)
        ingests = [r for r in api.runs("ingest_ticks") if r["run_type"] == "backfill"]
        print(f"tick backfill: {PARTITIONS} partitions x {TICKS_PER_DAY} ticks, max 3 ingest runs at a time "
              f"(python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f})")
        print(f"  retrain backfill exit {out.returncode}; ingest runs: {len(ingests)} "
              f"({sum(r['state'] == 'success' for r in ingests)} success) in {ingest_done:.1f} s")
        print(f"  training runs created: {len(training)}, trained: {trained} (policy: only the newest window)")
        print(f"  newest window {days[-3]}..{days[-1]} trained "
              + (f"{lag:.1f} s after its partition's commit (F = 120 s)" if lag is not None else "NEVER"))
        print(f"  promotions: {len(promotions)} ({', '.join(r['state'] for r in promotions)})")
        print(f"  wall time, backfill start -> everything settled: {total:.1f} s")
        print(f"  peak RSS of the whole stack: {peak['rss'] / 2**20:.0f} MB")
        fresh = lag is not None and lag <= 120
        ok = out.returncode == 0 and trained <= 1 and fresh and (PARTITIONS > 30 or total < 300)
        print(f"target: {PARTITIONS} partitions rebuilt, trainings <= policy, newest window within 120 s of its commit"
              f"{', < 300 s' if PARTITIONS <= 30 else ''} -> {'MEETS TARGET' if ok else 'MISSES TARGET'}")
        return 0 if ok else 1
    finally:
        subprocess.run(retrain + ["down"], env=env, capture_output=True, timeout=120)


if __name__ == "__main__":
    raise SystemExit(main())
