"""A CPU worker's environment carries no torch (`.[tabular,scaleout]`, deploy/docker/Dockerfile.worker-cpu).

The dependency groups resolve (over the installed distributions' metadata) to a CPU set without torch or CUDA
and a GPU set with them. In a fresh interpreter each: parsing every DAG file and importing what CPU tasks import
(ingest, quality gates, the LightGBM workloads, promotion, MLflow's LightGBM flavour) never imports torch; and
the power workload runs end to end (land → ingest → gate → train → evaluate → MLflow candidate) with torch made
unimportable, as it is on a CPU worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Records who imports torch (or, when BLOCK is set, refuses it as an environment without torch would).
_WATCH = textwrap.dedent("""
    import sys, traceback

    class TorchWatch:
        block = BLOCK
        importers = []

        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                if not self.importers:
                    self.importers.append("".join(traceback.format_stack(limit=25)[:-1]))
                if self.block:
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked: CPU worker)", name=name)
            return None

    WATCH = TorchWatch()
    sys.meta_path.insert(0, WATCH)
""")

CPU_MODULES = [
    "retrain.ingest.landing", "retrain.ingest.power", "retrain.ingest.ticks", "retrain.ingest.images",
    "retrain.quality", "retrain.snapshots", "retrain.events", "retrain.tracking",
    "retrain.workloads.tabular", "retrain.workloads.timeseries", "retrain.training.tabular",
    "retrain.training.ticks", "retrain.workloads.promote", "retrain.promotion", "retrain.registry",
    "retrain.airflow.runs", "retrain.airflow.claims", "retrain.airflow.champions", "retrain.airflow.arrivals",
    # what their task bodies import lazily
    "lightgbm", "great_expectations", "mlflow", "mlflow.lightgbm", "mlflow.pyfunc", "mlflow.models",
    "pandas", "pyarrow.parquet", "matplotlib.figure",
]


def _closure(extras: set[str]) -> set[str]:
    """Distribution names ``retrain[extras]`` pulls in: pyproject.toml for the project, then each installed
    distribution's declared requirements (markers evaluated for this interpreter)."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def requirements(name: str, wanted: frozenset[str]) -> list[Requirement]:
        if name == "retrain":
            groups = project["optional-dependencies"]
            return [Requirement(r) for r in project["dependencies"] + [r for g in wanted for r in groups[g]]]
        try:
            raw = distribution(name).requires or []
        except PackageNotFoundError:
            return []
        reqs = [Requirement(r) for r in raw]
        return [r for r in reqs if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in (wanted or {""}))]

    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [("retrain", frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        for req in requirements(name, wanted):
            todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return {name for name, _ in seen}


def test_the_cpu_worker_set_has_no_torch_and_the_gpu_set_has_no_lightgbm():
    cpu, gpu = _closure({"tabular", "scaleout"}), _closure({"dl", "scaleout"})
    assert {"lightgbm", "apache-airflow-providers-celery", "psycopg2-binary"} <= cpu
    assert not {n for n in cpu if n in ("torch", "torchvision", "triton") or n.startswith("nvidia-")}, sorted(cpu)
    assert {"torch", "torchvision", "apache-airflow-providers-celery"} <= gpu and "lightgbm" not in gpu
    assert {"torch", "lightgbm"} <= _closure({"all"})


def _run(body: str, *, block: bool, env: dict[str, str] | None = None, timeout: float = 240) -> dict:
    script = _WATCH.replace("BLOCK", repr(block)) + textwrap.dedent(body) + textwrap.dedent("""
        import json
        print("RESULT " + json.dumps({"torch_loaded": "torch" in sys.modules, "importers": WATCH.importers}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                         cwd=ROOT, env=env or os.environ.copy())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_cpu_task_modules_and_every_dag_file_import_without_torch():
    result = _run(f"""
        import importlib, importlib.util, pathlib
        for name in {CPU_MODULES!r}:
            importlib.import_module(name)
        for i, path in enumerate(sorted(pathlib.Path("dags").rglob("*.py"))):
            spec = importlib.util.spec_from_file_location(f"dag_file_{{i}}", path)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
    """, block=False)
    assert not result["torch_loaded"], "torch was imported by:\n" + "\n".join(result["importers"])


@pytest.mark.slow
def test_the_power_workload_runs_where_torch_cannot_be_imported(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "RETRAIN_"))}
    env["RETRAIN_HOME"] = str(tmp_path / "home")
    result = _run(f"""
        import contextlib, io, json
        from retrain import environment, snapshots
        from retrain.cli import main
        environment.apply()

        assert main(["sample-data", "power", "--rows", str(40 * 1440), "--seed", "5", "-o", {str(tmp_path / "p.txt")!r}]) == 0
        assert main(["land", "household_power", {str(tmp_path / "p.txt")!r}]) == 0
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main(["ingest", "household_power"]) == 0
        version = json.loads(printed.getvalue())["event"]["version"]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main(["train", "household_power", version]) == 0
        candidate = json.loads(printed.getvalue())
        assert candidate["model_uri"] and candidate["metrics"]["test_rmse"] > 0, candidate
    """, block=True, env=env)
    assert not result["torch_loaded"] and not result["importers"], "torch was asked for by:\n" + "\n".join(result["importers"])


LIB = ROOT / "lib" / "retrain"
# the one module outside the glue that reaches into it: ``retrain setup`` writes the pools after migrating the DB
GLUE_CALLERS = {"retrain.stack"}


def _library_modules() -> list[str]:
    names = []
    for path in sorted(LIB.rglob("*.py")):
        parts = path.relative_to(LIB.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_only_the_glue_package_imports_airflow():
    """Every module of the library but ``retrain.airflow.*`` imports in a fresh interpreter without loading
    Airflow, and none imports it lazily either (so ``python -m retrain …`` runs on a box without a scheduler)."""
    import ast

    outside = [m for m in _library_modules() if not m.startswith("retrain.airflow") and m != "retrain.__main__"]
    assert "retrain.storage" in outside and "retrain.cli" in outside
    lazy = []
    for name in outside:
        path = LIB.parent.joinpath(*name.split(".")).with_suffix(".py")
        if not path.exists():
            path = path.with_suffix("") / "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for target in targets:
                if target == "airflow" or target.startswith("airflow.") or \
                        (target.startswith("retrain.airflow") and name not in GLUE_CALLERS):
                    lazy.append(f"{name}:{node.lineno} imports {target}")
    assert lazy == []
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import importlib, json, sys
        for name in {outside!r}:
            importlib.import_module(name)
        print("RESULT " + json.dumps(sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))))
    """)], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-5000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))
    assert json.loads(line[len("RESULT "):]) == []
