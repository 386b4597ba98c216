"""Tabular training on the full-size household power file: wall time per step and peak memory.

How it is measured
------------------
The benchmark process itself stays small (standard library only) and runs everything in subprocesses, so
no child inherits a large peak RSS from it (Linux carries the parent's high-water mark into a child's
``ru_maxrss`` across fork/exec). Each child is reaped with ``os.wait4``, which returns that child's own
``rusage``; its ``ru_maxrss`` is the child's peak RSS.

1. Setup, in two subprocesses (not part of the training numbers): a full-size UCI file of 2,075,259 rows
   made by ``retrain.data.power.generate_power`` and written to a temp dir; then, with an isolated
   ``RETRAIN_HOME`` in that temp dir (set in the children's environment, so ``retrain.settings`` reads it
   first; ``reset_settings()`` anyway), the file is landed with ``retrain.ingest.landing.land`` and ingested
   with ``retrain.ingest.power.ingest_file`` (the ``ingest_power`` DAG's work), which commits the curated
   snapshot and yields the asset event's extra. Times and each process's peak RSS are printed.
2. Training subprocess (a fresh interpreter, like an Airflow task process): the ``tabular_ml_training``
   DAG's steps ``retrain.workloads.tabular.gate`` -> ``prepare`` -> ``train`` -> ``evaluate`` on the
   snapshot's event extra, with a work folder under the temp ``RETRAIN_HOME``. Each step's wall time
   (``time.perf_counter``) includes the imports it triggers (GX in the gate, LightGBM in train, matplotlib
   in evaluate), as a task would pay them. Per step the child also reports its RSS at the start and its
   peak RSS during the step: ``VmHWM`` from ``/proc/self/status``, reset before the step with
   ``echo 5 > /proc/self/clear_refs`` (the reset sets the mark to the current RSS, so a step's peak includes
   what earlier steps left resident; where the reset is not allowed the running peak is shown).
   Resetting ``VmHWM`` also resets the kernel's record that ``ru_maxrss`` is taken from, so the training
   process's peak RSS, checked against the target, is the larger of its ``ru_maxrss`` from ``os.wait4`` and
   its per-step peaks.
3. MLflow logging (``retrain.workloads.tabular.log_candidate``: params, per-iteration metrics, datasets,
   artifacts, the LightGBM model, into a SQLite store in the temp ``RETRAIN_HOME``) runs in a *separate*
   subprocess so it adds neither to the training peak nor to the training wall time; it is reported
   separately. ``--no-mlflow`` skips it.

The 1-minute load average is printed before and after: the machine has 2 cores, and anything else running
(e.g. a test suite) slows the multi-threaded LightGBM step a lot.

Printed: wall time per step, peak RSS (MB), test RMSE/MAE of the model and of the seasonal-naive baseline,
and the target: peak RSS of the training process < 2 GB.

Run from the repo root: ``.venv/bin/python bench/bench_tabular_training.py [--no-mlflow]``
(about 30-45 s on 2 cores, ~2 GB RAM for the generator).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

FULL_ROWS = 2_075_259
TARGET_RSS_MB = 2048
REPO = Path(__file__).resolve().parent.parent

CHILD_GENERATE = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    from retrain.data import power

    started = time.perf_counter()
    data = power.generate_power(int(sys.argv[2]))
    Path(sys.argv[1]).write_bytes(data)
    print(json.dumps({"generate_s": time.perf_counter() - started, "bytes": len(data)}))
    """
)

CHILD_INGEST = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    from retrain.settings import get_settings, reset_settings

    reset_settings()
    settings = get_settings()
    assert str(settings.home) == str(Path(sys.argv[1]).resolve()), settings.home
    from retrain.ingest import landing
    from retrain.ingest import power as ingest_power

    source = Path(sys.argv[2])
    started = time.perf_counter()
    landing.land("household_power", str(source))
    result = ingest_power.ingest_file(source.name, run_id="bench_ingest")
    print(json.dumps({"ingest_s": time.perf_counter() - started, "status": result.status,
                      "event": result.snapshot.event_extra(),
                      "work": settings.work("train", "bench_tabular_training", "bench", "household_power")}))
    """
)

CHILD_TRAIN = textwrap.dedent(
    """
    import json, resource, sys, time

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            return True
        except OSError:
            return False

    def status_mb(field):
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    event, work = json.loads(sys.argv[1]), sys.argv[2]
    steps = []

    def step(name, fn):
        resettable = reset_peak()
        start_mb = status_mb("VmRSS")
        started = time.perf_counter()
        result = fn()
        steps.append({"step": name, "seconds": time.perf_counter() - started, "start_mb": start_mb,
                      "peak_mb": status_mb("VmHWM"), "per_step_peak": resettable})
        return result

    step("import retrain.workloads.tabular", lambda: __import__("retrain.workloads.tabular"))
    from retrain.workloads import tabular

    cfg = tabular.dataset_config(event["dataset"])
    gate = step("gate (GX quality gate)", lambda: tabular.gate(event, cfg, work))
    prepared = step("prepare (hourly features, split)", lambda: tabular.prepare(event, cfg, work))
    trained = step("train (LightGBM)", lambda: tabular.train(event, cfg, work))
    metrics = step("evaluate (metrics, plots)", lambda: tabular.evaluate(event, cfg, work))
    with open(f"{work}/train.json") as handle:
        rounds = len(next(iter(json.load(handle)["history"].values())))
    print(json.dumps({"steps": steps, "gate": gate, "prepare": prepared, "train": trained, "metrics": metrics,
                      "rounds": rounds}))
    """
)

CHILD_MLFLOW = textwrap.dedent(
    """
    import json, sys, time

    event, gate, work = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    started = time.perf_counter()
    import mlflow
    from retrain.workloads import tabular
    imported = time.perf_counter()
    extra = tabular.log_candidate(event, tabular.dataset_config(event["dataset"]), work, quality=gate,
                                  coordinates={"dag_id": "bench_tabular_training", "run_id": "bench",
                                               "task_id": "log_candidate"})
    done = time.perf_counter()
    print(json.dumps({"import_s": imported - started, "log_s": done - imported, "total_s": done - started,
                      "model_uri": extra.get("model_uri")}))
    """
)


def run_child(code: str, args: list[str], env: dict[str, str], tmp: Path, name: str) -> tuple[dict, float, float]:
    """Run a child script; returns (its JSON result, wall seconds, its own peak RSS in MB from os.wait4)."""
    script = tmp / f"{name}.py"
    script.write_text(code)
    out_path, err_path = tmp / f"{name}.out", tmp / f"{name}.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(script), *args], env=env, cwd=REPO, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed (rc={proc.returncode}):\n{err_path.read_text()[-4000:]}")
    return json.loads(out_path.read_text().strip().splitlines()[-1]), wall, usage.ru_maxrss / 1024


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def main() -> int:
    with_mlflow = "--no-mlflow" not in sys.argv[1:]
    tmp_dir = tempfile.TemporaryDirectory(prefix="bench-tabular-")
    tmp = Path(tmp_dir.name)
    home = tmp / "home"
    env = dict(os.environ)
    env["RETRAIN_HOME"] = str(home)
    for name in ("RETRAIN_DATA_ROOT", "MLFLOW_TRACKING_URI", "RETRAIN_MLFLOW_ARTIFACT_ROOT"):
        env.pop(name, None)
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    print(f"tabular training benchmark: {FULL_ROWS:,} rows (python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          f"{load()})")
    print(f"  isolated RETRAIN_HOME: {home}")
    source = tmp / "household_power_consumption.txt"
    generated, _, generate_peak = run_child(CHILD_GENERATE, [str(source), str(FULL_ROWS)], env, tmp, "generate")
    print(f"  setup: generate_power + write file    {generated['generate_s']:7.2f} s  "
          f"({generated['bytes'] / 1e6:.1f} MB; peak RSS {generate_peak:.0f} MB, test-data generator only)")
    setup, _, ingest_peak = run_child(CHILD_INGEST, [str(home), str(source)], env, tmp, "ingest")
    event, work = setup["event"], setup["work"]
    print(f"  setup: land + ingest (parse, parquet)  {setup['ingest_s']:7.2f} s  ({setup['status']}, snapshot "
          f"{event['version']}, {event['rows']:,} rows; ingest process peak RSS {ingest_peak:.0f} MB)")

    out, wall, peak = run_child(CHILD_TRAIN, [json.dumps(event), work], env, tmp, "train_steps")

    print()
    print(f"{'step (one subprocess)':36s} {'wall s':>8s} {'RSS at start MB':>16s} {'peak RSS MB':>12s}")
    print("-" * 75)
    for s in out["steps"]:
        mark = "" if s["per_step_peak"] else " (running peak)"
        print(f"{s['step']:36s} {s['seconds']:8.2f} {s['start_mb']:16.0f} {s['peak_mb']:12.0f}{mark}")
    total = sum(s["seconds"] for s in out["steps"])
    print("-" * 75)
    print(f"{'total of steps':36s} {total:8.2f}")
    peak = max([peak] + [s["peak_mb"] for s in out["steps"]])
    print(f"{'training subprocess (wall, peak RSS)':36s} {wall:8.2f} {'':16s} {peak:12.0f}")

    p = out["prepare"]
    print()
    print(f"  gate: {out['gate']['verdict']} ({out['gate']['evaluated']} expectations); hours: {p['hours']:,}; "
          f"split rows train/valid/test: {p['split']['train']['rows']}/{p['split']['valid']['rows']}/"
          f"{p['split']['test']['rows']}; features: {len(p['features'])}")
    print(f"  LightGBM: {out['rounds']} boosting rounds run, best iteration {out['train']['best_iteration']} "
          f"(train.json 'iterations' says {out['train']['iterations']})")
    m = out["metrics"]
    print(f"  test RMSE {m['test_rmse']:.4f} kW vs seasonal naive {m['baseline_seasonal_naive_rmse']:.4f} kW "
          f"(skill {m['test_rmse_skill_vs_baseline']:+.1%}); MAE {m['test_mae']:.4f} vs "
          f"{m['baseline_seasonal_naive_mae']:.4f}; {m['test_examples']} test hours")

    if with_mlflow:
        try:
            mo, mwall, mpeak = run_child(CHILD_MLFLOW, [json.dumps(event), json.dumps(out["gate"]), work], env, tmp,
                                         "log_candidate")
            print(f"  MLflow log_candidate (separate process, not in the totals): {mo['total_s']:.2f} s "
                  f"(imports {mo['import_s']:.2f} s, logging {mo['log_s']:.2f} s; process wall {mwall:.2f} s, "
                  f"peak RSS {mpeak:.0f} MB)")
        except RuntimeError as exc:
            print(f"  MLflow log_candidate FAILED (not part of the target): {str(exc).splitlines()[0]}")
            print(textwrap.indent(str(exc)[-1500:], "    "))

    print()
    print(f"  ({load()})")
    ok = peak < TARGET_RSS_MB
    print(f"target: peak RSS of the training process < {TARGET_RSS_MB} MB -> {peak:.0f} MB "
          f"{'MEETS TARGET' if ok else 'MISSES TARGET'}")
    tmp_dir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
