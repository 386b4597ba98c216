"""The process environment of the embedded stack, derived from :mod:`retrain.settings`.

Airflow reads its configuration when it is first imported, so these variables must be in ``os.environ``
before anything imports Airflow: :func:`apply` does that for the CLI and the tests.
"""

from __future__ import annotations

import json
import os

from retrain.settings import Settings, get_settings, reset_settings


def airflow_environment(settings: Settings | None = None) -> dict[str, str]:
    s = settings or get_settings()
    cores = os.cpu_count() or 2
    home = s.airflow_home
    return {
        "RETRAIN_HOME": str(s.home),
        "RETRAIN_DATA_ROOT": s.data_root,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(s.dags_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # LocalExecutor forks one worker per parallelism slot: size it to the machine, not Airflow's 32.
        "AIRFLOW__CORE__PARALLELISM": str(max(4, 2 * cores)),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "15",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "simple_auth_manager_passwords.json.generated"),
        # The landing folder as a filesystem connection, for the ingest DAGs' deferrable FileSensors.
        "AIRFLOW_CONN_RETRAIN_LANDING": json.dumps({"conn_type": "fs", "extra": {"path": s.landing()}}),
        "MLFLOW_TRACKING_URI": s.mlflow_tracking_uri,
        "GX_ANALYTICS_ENABLED": "false",
        # OpenMP threads (LightGBM, torch) yield instead of spinning when tasks share cores
        "OMP_WAIT_POLICY": "PASSIVE",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }


def apply(settings: Settings | None = None, *, override: bool = False) -> dict[str, str]:
    """Put the embedded stack's variables into ``os.environ`` (existing values win unless ``override``)."""
    env = airflow_environment(settings)
    for key, value in env.items():
        if override or key not in os.environ:
            os.environ[key] = value
    reset_settings()
    return env
