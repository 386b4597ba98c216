"""Test-session isolation: a throw-away RETRAIN_HOME (Airflow home, SQLite metadata, MLflow store, data root).

Airflow reads its configuration at first import, so the environment is set here, at collection time, before
any test module imports Airflow. Nothing a test does touches the checkout's .retrain/.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# test support (tests/support/): importable by every test as top-level modules, e.g. ``from inprocess import load_dags``
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="retrain-test-"))
for _key in ("RETRAIN_HOME", "RETRAIN_DATA_ROOT", "MLFLOW_TRACKING_URI", "AIRFLOW_HOME", "RETRAIN_CONFIG_DIR",
             "RETRAIN_EXPECTATIONS") + tuple(k for k in os.environ if k.startswith("AIRFLOW__") or k.startswith("AIRFLOW_CONN_")):
    os.environ.pop(_key, None)
os.environ["RETRAIN_HOME"] = str(_SESSION_HOME)

from retrain import environment  # noqa: E402  (after the environment is set)

environment.apply(override=True)


@pytest.fixture(scope="session")
def session_home() -> Path:
    return _SESSION_HOME


@pytest.fixture(scope="session")
def airflow_db(session_home):
    """The session's Airflow metadata DB, migrated once, with the workload pools."""
    from retrain import stack

    stack.setup(quiet=True)
    return session_home / "airflow" / "airflow.db"


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0:
        shutil.rmtree(_SESSION_HOME, ignore_errors=True)
    else:
        print(f"\nretrain test state kept for inspection: {_SESSION_HOME}")


@pytest.fixture(scope="session")
def fault_scale():
    """``fault_scale(name, default)``: the size of a fault scenario. The suite runs the defaults (small data);
    ``bench/bench_faults.py`` runs the same tests larger by setting ``RETRAIN_FAULT_<NAME>``."""

    def scale(name: str, default: int) -> int:
        return int(os.environ.get(f"RETRAIN_FAULT_{name.upper()}", default))

    return scale


@pytest.fixture(scope="session")
def fault_report():
    """``fault_report(**row)``: one row of the fault table (scenario, fault, snapshots, trained_or_superseded,
    files_lost, double_champions, lost_champion_events, worst_lag_s), appended as JSON to
    ``$RETRAIN_FAULT_REPORT`` when ``bench/bench_faults.py`` collects them; a no-op otherwise."""
    import json

    path = os.environ.get("RETRAIN_FAULT_REPORT")

    def record(**row) -> None:
        if path:
            with open(path, "a") as handle:
                handle.write(json.dumps(row, default=str) + "\n")

    return record
