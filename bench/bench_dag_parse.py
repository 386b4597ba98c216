"""DAG parse time: what each file under ``dags/`` costs the DAG processor beyond a trivial DAG.

How it is measured
------------------
For every ``dags/**/*.py`` file, and for each of ``REPEATS`` fresh Python interpreters (subprocesses, so no
import is ever warm in ``sys.modules``):

1. the child first imports a *trivial* asset-scheduled DAG written to a temp file
   (``from airflow.sdk import DAG, Asset, task``; a DAG with ``schedule=Asset(...)`` and one ``@task``).
   That pays for Airflow's own import, its lazy provider / asset machinery and the SDK, which every DAG file
   pays and which a real DAG processor has already paid before it parses user files;
2. the child then imports the DAG file by path with ``importlib.util.spec_from_file_location`` +
   ``exec_module`` under a unique module name (as Airflow's DagBag does) and times that with
   ``time.perf_counter``;
3. the child reports which heavy modules (torch, torchvision, lightgbm, mlflow, great_expectations, pandas,
   sklearn) are in ``sys.modules`` afterwards, how many modules the DAG file pulled in, and how many DAGs it
   registered.

The reported "beyond trivial" time is the median over the repeats of step 2 alone. The children run with the
embedded stack's environment (``retrain.environment.airflow_environment()``) with ``RETRAIN_HOME`` pointing
at a throw-away temp dir, so ``AIRFLOW_HOME``, the SQLite DB path etc. never touch the checkout's state.

Target: < 50 ms beyond the trivial DAG per file, and no heavy module imported at parse time.

Run from the repo root: ``.venv/bin/python bench/bench_dag_parse.py`` (about 15-20 s on 2 cores).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPEATS = 5
TARGET_MS = 50.0
HEAVY = ("torch", "torchvision", "lightgbm", "mlflow", "great_expectations", "pandas", "sklearn")

TRIVIAL_DAG = textwrap.dedent(
    """
    import pendulum
    from airflow.sdk import DAG, Asset, task

    TRIGGER = Asset(name="bench_trivial", uri="file:///tmp/bench_trivial_asset")

    with DAG(dag_id="bench_trivial", schedule=TRIGGER, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             catchup=False):

        @task
        def hello() -> int:
            return 1

        hello()
    """
)

CHILD = textwrap.dedent(
    """
    import importlib.util, json, sys, time

    HEAVY = {heavy!r}

    def load(path, name):
        # as Airflow's DagBag does: unique module name, DAGs auto-registered against it
        from airflow.sdk.definitions._internal.contextmanager import DagContext

        DagContext.current_autoregister_module_name = name
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        DagContext.current_autoregister_module_name = None
        return module

    t0 = time.perf_counter()
    load(sys.argv[1], "bench_trivial_dag")
    t1 = time.perf_counter()
    from airflow.sdk.definitions._internal.contextmanager import DagContext
    registered = {{dag.dag_id for dag, _ in DagContext.autoregistered_dags}}
    assert registered == {{"bench_trivial"}}, registered
    before = set(sys.modules)
    t2 = time.perf_counter()
    load(sys.argv[2], "unusual_prefix_bench_dag_file")
    t3 = time.perf_counter()
    new = set(sys.modules) - before
    print(json.dumps({{
        "trivial_ms": (t1 - t0) * 1000,
        "dag_ms": (t3 - t2) * 1000,
        "heavy": sorted(m for m in HEAVY if m in sys.modules),
        "new_modules": len(new),
        "new_top_level": sorted({{m.split(".")[0] for m in new}}),
        "dags": sorted({{dag.dag_id for dag, _ in DagContext.autoregistered_dags}} - registered),
    }}))
    """
).format(heavy=HEAVY)


def child_environment(home: Path) -> dict[str, str]:
    os.environ["RETRAIN_HOME"] = str(home)
    os.environ.pop("RETRAIN_DATA_ROOT", None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from retrain.environment import airflow_environment
    from retrain.settings import reset_settings

    reset_settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(airflow_environment())
    # Do not write __pycache__ next to the DAG files (this benchmark only writes under its temp dir); the
    # installed packages' and lib/'s existing .pyc files are still read. Compiling a DAG file is < 1 ms.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_child(trivial: Path, dag_file: Path, env: dict[str, str], script: Path) -> dict:
    proc = subprocess.run([sys.executable, str(script), str(trivial), str(dag_file)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{dag_file} failed to parse (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    dag_files = sorted(p for p in (REPO / "dags").rglob("*.py") if p.name != "__init__.py")
    with tempfile.TemporaryDirectory(prefix="bench-dag-parse-") as tmp:
        tmp_path = Path(tmp)
        env = child_environment(tmp_path / "home")
        trivial = tmp_path / "bench_trivial_dag.py"
        trivial.write_text(TRIVIAL_DAG)
        script = tmp_path / "child.py"
        script.write_text(CHILD)

        # one untimed run first: creates AIRFLOW_HOME and warms the OS file cache, as a long-running DAG
        # processor would have done long before.
        for dag_file in dag_files:
            run_child(trivial, dag_file, env, script)

        print(f"DAG parse time, median of {REPEATS} fresh interpreters each (python {sys.version.split()[0]}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f})")
        header = f"{'file':40s} {'trivial ms':>10s} {'beyond ms':>10s} {'min..max':>15s} {'+mods':>6s}  heavy modules"
        print(header)
        print("-" * len(header))
        worst = 0.0
        any_heavy = False
        for dag_file in dag_files:
            runs = [run_child(trivial, dag_file, env, script) for _ in range(REPEATS)]
            beyond = [r["dag_ms"] for r in runs]
            trivial_ms = statistics.median(r["trivial_ms"] for r in runs)
            heavy = sorted({m for r in runs for m in r["heavy"]})
            median = statistics.median(beyond)
            worst = max(worst, median)
            any_heavy = any_heavy or bool(heavy)
            rel = dag_file.relative_to(REPO)
            print(f"{str(rel):40s} {trivial_ms:10.1f} {median:10.1f} {min(beyond):7.1f}..{max(beyond):<7.1f}"
                  f"{runs[0]['new_modules']:6d}  {', '.join(heavy) or 'none'}")
            print(f"{'':40s} DAGs: {', '.join(runs[0]['dags']) or 'NONE'}; new modules from: "
                  f"{', '.join(runs[0]['new_top_level'])}")
        ok = worst < TARGET_MS and not any_heavy
        print()
        print(f"target: < {TARGET_MS:.0f} ms beyond the trivial DAG per file and no heavy modules "
              f"({', '.join(HEAVY)})")
        print(f"worst file: {worst:.1f} ms beyond trivial; heavy modules: {'yes' if any_heavy else 'none'} -> "
              f"{'MEETS TARGET' if ok else 'MISSES TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
