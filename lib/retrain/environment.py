"""The process environment of the stack, derived from :mod:`retrain.settings` and the profile.

Airflow reads its configuration when it is first imported, so these variables must be in ``os.environ``
before anything imports Airflow: :func:`apply` does that for the CLI and the tests.

Two profiles, chosen by environment alone (the DAG files are the same):

=======================  =====================================================================================
``RETRAIN_PROFILE``      ``embedded`` (default): LocalExecutor, SQLite metadata, everything on one machine.
                         ``celery``: CeleryExecutor with a Redis broker, PostgreSQL metadata, workers per queue.
=======================  =====================================================================================

The scale-out profile reads (see ``deploy/README.md``):

==============================  ==============================================================================
RETRAIN_DATABASE_URL            Airflow metadata DB, ``postgresql://user:pw@host:5432/airflow`` (required)
RETRAIN_BROKER_URL              Celery broker, ``redis://host:6379/0`` (required)
RETRAIN_BROKER_PREFIX           optional prefix of every broker key (several deployments on one Redis)
RETRAIN_API_URL                 the api-server as workers reach it (``AIRFLOW__API__BASE_URL``)
RETRAIN_JWT_SECRET              the secret scheduler, api-server and workers share to sign task tokens
RETRAIN_WORKER_NAME             this worker's task-instance hostname (default: the host's FQDN)
MLFLOW_TRACKING_URI             the MLflow server (default: the one `retrain up` starts on 127.0.0.1)
==============================  ==============================================================================
"""

from __future__ import annotations

import json
import os
import socket

from retrain.errors import ConfigError
from retrain.settings import Settings, get_settings, reset_settings

PROFILES = ("embedded", "celery")


class ProfileError(ConfigError):
    """The environment selects a profile but lacks what it needs."""


def profile() -> str:
    """The profile ``RETRAIN_PROFILE`` selects (``embedded`` when unset)."""
    value = os.environ.get("RETRAIN_PROFILE", "").strip().lower() or "embedded"
    if value not in PROFILES:
        raise ProfileError(f"RETRAIN_PROFILE must be one of {list(PROFILES)} (observed {value!r})")
    return value


def is_scale_out() -> bool:
    return profile() == "celery"


def sqlalchemy_url(url: str) -> str:
    """A PostgreSQL URL with the psycopg2 driver named: with SQLAlchemy 2.1 a bare ``postgresql://`` means psycopg 3."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    raise ProfileError(f"expected a postgresql:// URL (observed scheme {url.split('://')[0]!r})")


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ProfileError(f"RETRAIN_PROFILE=celery needs {name} (see deploy/README.md)")
    return value


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the scale-out profile: ``RETRAIN_WORKER_NAME`` when set, else the FQDN.

    Every worker on one host would otherwise report the same task-instance hostname, so the single-host stack
    names each worker after its queue; on separate hosts the FQDN already tells them apart.
    """
    return os.environ.get("RETRAIN_WORKER_NAME") or socket.getfqdn()


def _celery_environment() -> dict[str, str]:
    database = sqlalchemy_url(_required("RETRAIN_DATABASE_URL"))
    env = {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        # Celery parallelism bounds queued + running task instances across all workers, not local forks
        "AIRFLOW__CORE__PARALLELISM": "32",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
        "AIRFLOW__CELERY__BROKER_URL": _required("RETRAIN_BROKER_URL"),
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database}",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "retrain.environment.worker_hostname",
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": "default",
    }
    if prefix := os.environ.get("RETRAIN_BROKER_PREFIX"):
        env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] = prefix
    if api := os.environ.get("RETRAIN_API_URL"):
        env["AIRFLOW__API__BASE_URL"] = api.rstrip("/")
    if secret := os.environ.get("RETRAIN_JWT_SECRET"):
        env["AIRFLOW__API_AUTH__JWT_SECRET"] = secret
    return env


def airflow_environment(settings: Settings | None = None) -> dict[str, str]:
    s = settings or get_settings()
    cores = os.cpu_count() or 2
    home = s.airflow_home
    env = {
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
    if is_scale_out():
        env |= _celery_environment()
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # never a per-host SQLite file when tasks run on many hosts: the server `retrain up` starts here
            env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{os.environ.get('RETRAIN_MLFLOW_PORT', '5000')}"
    return env


def apply(settings: Settings | None = None, *, override: bool = False) -> dict[str, str]:
    """Put the stack's variables into ``os.environ`` (existing values win unless ``override``)."""
    env = airflow_environment(settings)
    for key, value in env.items():
        if override or key not in os.environ:
            os.environ[key] = value
    reset_settings()
    return env
