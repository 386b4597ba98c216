"""N concurrent small power drops through the Celery deployment versus the embedded LocalExecutor.

For each profile in turn, starts the stack with `retrain up` in a temporary RETRAIN_HOME on free ports (not timed),
then lands N power files (40 days of one-minute readings each) into the landing folder at once and times, from
the first drop, until the last promotion decision: every drop has its `household_power` event, every candidate was
judged by `promote_models`, nothing is queued or running, and either every event was consumed by a
`tabular_ml_training` run (trained, or recorded as superseded by a newer snapshot) or nothing changed for 30 s.
The end time is the last promotion run's end. Events no training run consumed are counted and printed: with
`max_active_runs: 1`, Airflow 3.3.2 leaves events that arrive while a run is pending unconsumed until the next
event of the asset (apache/airflow#56050), in both profiles.

* embedded: LocalExecutor, SQLite metadata, MLflow on SQLite (`retrain up` as shipped).
* celery: RETRAIN_PROFILE=celery, PostgreSQL metadata and MLflow store in fresh databases (dropped after),
  Redis broker under its own key prefix (deleted after), one `default` worker with concurrency 4
  (RETRAIN_WORKER_QUEUES=default: the power workload never touches the `gpu` queue).

Both use the local data root and the landing-folder sensor, so only the executor, metadata DB and broker differ.
Prints per profile: wall time, drops/min, ingest/training/promotion runs, candidates judged, events no training
consumed, the time from the first drop to the first and to the last `household_power` event (all N ingested: the
executor's parallel task throughput), and how long the first event took to reach a running training. Needs PostgreSQL and Redis on 127.0.0.1 for the celery row
(`--only embedded` skips it). N from BENCH_DROPS (default 4).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
from datetime import datetime
from pathlib import Path

DROPS = int(os.environ.get("BENCH_DROPS", "4"))
DAYS = 40
RETRAIN = [sys.executable, "-m", "retrain"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _postgres(sql: str) -> None:
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


def _settled(api, drops: int, quiet: dict) -> dict | None:
    """The run summary once every drop has been ingested and every candidate judged, with every event consumed
    or nothing changed for 30 s; else None. ``quiet`` keeps the last state seen and since when."""
    try:
        events = api.listing("assets/events?order_by=timestamp&limit=500", "asset_events")
    except urllib.error.HTTPError as exc:  # 3.3.2 answers 500 while an event's triggered run is still queued
        if exc.code == 500:
            return None
        raise
    data = [e for e in events if e["name"] == "household_power"]
    candidates = [e for e in events if e["name"] == "household_power_lgbm.candidate"]
    if len(data) < drops:
        return None
    training, promotion = api.runs("tabular_ml_training"), api.runs("promote_models")
    if any(r["state"] not in ("success", "failed") for r in training + promotion):
        return None
    consumed = {e["id"] for r in training
                for e in api.get(f"dags/tabular_ml_training/dagRuns/{r['dag_run_id']}/upstreamAssetEvents")["asset_events"]}
    judged = {e["id"] for r in promotion
              for e in api.get(f"dags/promote_models/dagRuns/{r['dag_run_id']}/upstreamAssetEvents")["asset_events"]}
    if not {e["id"] for e in candidates} <= judged:
        return None
    unconsumed = {e["id"] for e in data} - consumed
    state = (len(events), len(training), len(promotion))
    if quiet.get("state") != state:
        quiet.update(state=state, since=time.monotonic())
    if unconsumed and time.monotonic() - quiet["since"] < 30:
        return None
    ingest = [r for r in api.runs("ingest_power") if r["state"] in ("success", "failed")]
    return {"data_events": data, "training": training, "promotion": promotion, "candidates": candidates,
            "ingest_runs": ingest, "unconsumed": len(unconsumed)}


def run_profile(profile: str, files: list[Path]) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"bench-{profile}-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "RETRAIN_"))}
    env |= {"RETRAIN_HOME": str(home), "RETRAIN_AIRFLOW_PORT": str(_port()), "RETRAIN_MLFLOW_PORT": str(_port())}
    name = f"retrain_bench_{secrets.token_hex(4)}"
    if profile == "celery":
        _postgres(f"CREATE DATABASE {name}")
        _postgres(f"CREATE DATABASE {name}_mlflow")
        env |= {"RETRAIN_PROFILE": "celery", "RETRAIN_WORKER_QUEUES": "default",
                "RETRAIN_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}",
                "RETRAIN_MLFLOW_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}_mlflow",
                "RETRAIN_BROKER_URL": "redis://127.0.0.1:6379/0", "RETRAIN_BROKER_PREFIX": f"{name}:"}
    try:
        started = time.monotonic()
        subprocess.run(RETRAIN + ["up"], env=env, check=True, capture_output=True, timeout=300)
        up_seconds = time.monotonic() - started
        from retrain.stack import AirflowApi

        password = json.loads((home / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        api = AirflowApi(f"http://127.0.0.1:{env['RETRAIN_AIRFLOW_PORT']}", password)
        landing = home / "data" / "landing" / "household_power"
        landing.mkdir(parents=True, exist_ok=True)
        first_drop = time.time()
        for path in files:  # the landing contract: a hidden name while copying, then an atomic rename
            staging = landing / f".{path.name}.part"
            staging.write_bytes(path.read_bytes())
            staging.rename(landing / path.name)
        deadline, quiet = time.monotonic() + 900, {}
        while (summary := _settled(api, len(files), quiet)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{profile}: not settled after 900 s")
            time.sleep(2)
        last_decision = max(_ts(r["end_date"]) for r in summary["promotion"])
        first_event = min(_ts(e["timestamp"]) for e in summary["data_events"])
        last_event = max(_ts(e["timestamp"]) for e in summary["data_events"])
        first_training = min(_ts(r["start_date"]) for r in summary["training"])
        return {
            "profile": profile, "up_seconds": up_seconds, "wall_seconds": last_decision - first_drop,
            "drops": len(files), "ingest_runs": len(summary["ingest_runs"]),
            "training_runs": len(summary["training"]),
            "trained": sum(r["state"] == "success" for r in summary["training"]),
            "promotion_runs": len(summary["promotion"]), "candidates_judged": len(summary["candidates"]),
            "unconsumed_events": summary["unconsumed"],
            "drop_to_first_event": first_event - first_drop, "drop_to_last_event": last_event - first_drop,
            "first_event_to_training": first_training - first_event,
        }
    finally:
        subprocess.run(RETRAIN + ["down"], env=env, capture_output=True, timeout=180)
        shutil.rmtree(home, ignore_errors=True)
        if profile == "celery":
            import redis

            client = redis.Redis(host="127.0.0.1", port=6379)
            keys = list(client.scan_iter(match=f"{name}:*"))
            if keys:
                client.delete(*keys)
            _postgres(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            _postgres(f"DROP DATABASE IF EXISTS {name}_mlflow WITH (FORCE)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["embedded", "celery"])
    args = parser.parse_args()
    from retrain.data.power import generate_power

    staging = Path(tempfile.mkdtemp(prefix="bench-drops-"))
    files = []
    for seed in range(DROPS):
        path = staging / f"power-{seed:02d}.txt"
        path.write_bytes(generate_power(DAYS * 1440, seed=100 + seed))
        files.append(path)
    print(f"{DROPS} drops of {DAYS} days each ({files[0].stat().st_size / 1e6:.1f} MB); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    results = []
    for profile in ([args.only] if args.only else ["embedded", "celery"]):
        try:
            result = run_profile(profile, files)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        results.append(result)
        print(f"{profile:<9} wall {result['wall_seconds']:6.1f} s  ({60 * result['drops'] / result['wall_seconds']:.1f} drops/min)"
              f"  ingest runs {result['ingest_runs']}, training runs {result['training_runs']} "
              f"({result['trained']} trained), promotion runs {result['promotion_runs']}, "
              f"candidates judged {result['candidates_judged']}, events no training consumed "
              f"{result['unconsumed_events']}; drop→first event {result['drop_to_first_event']:.1f} s, "
              f"drop→last event (all {result['drops']} ingested) {result['drop_to_last_event']:.1f} s, "
              f"event→training {result['first_event_to_training']:.1f} s; stack up {result['up_seconds']:.0f} s "
              f"(load {os.getloadavg()[0]:.1f})")
    if len(results) == 2:
        print(f"celery / embedded wall time: {results[1]['wall_seconds'] / results[0]['wall_seconds']:.2f}x")
    shutil.rmtree(staging, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
