"""``DAG(...)`` and task defaults of a workload, from ``configs/<workload>.yaml``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from retrain import config
from retrain.airflow.failures import notify_failure


def default_args(workload: str) -> dict[str, Any]:
    """Task defaults of a workload, from ``configs/<workload>.yaml``."""
    d = config.load(workload).defaults
    return {
        "owner": d.owner,
        "retries": d.retries,
        "retry_delay": timedelta(seconds=d.retry_delay_seconds),
        "retry_exponential_backoff": 2.0 if d.retry_exponential_backoff else 0,
        "max_retry_delay": timedelta(seconds=d.max_retry_delay_seconds),
        "execution_timeout": timedelta(minutes=d.execution_timeout_minutes),
        "pool": d.pool,
        "queue": d.queue,
        "on_failure_callback": notify_failure,
    }


def dag_kwargs(workload: str) -> dict[str, Any]:
    """``DAG(...)`` keyword arguments shared by every DAG of a workload."""
    cfg = config.load(workload)
    return {
        "default_args": default_args(workload),
        "max_active_runs": cfg.max_active_runs,
        "tags": ["retrain", *cfg.tags],
        "catchup": False,
    }
