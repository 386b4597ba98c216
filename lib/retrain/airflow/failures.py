"""What happens when a task fails: one log line and the workload's e-mail, and no retry for errors that another
try cannot fix (design contract 7)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any

from retrain import config
from retrain.errors import (CandidateError, ConfigError, DataFormatError, DataQualityError, LandingPathError,
                            SnapshotError)

log = logging.getLogger(__name__)

# Errors that another try cannot fix: the task fails at once, without retry.
PERMANENT_ERRORS = (DataQualityError, DataFormatError, SnapshotError, ConfigError, LandingPathError, CandidateError)


def notify_failure(context: Mapping[str, Any]) -> None:
    """Failure callback: one structured log line always, an e-mail when the workload's config lists recipients."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", "?")
    workload = context["dag"].params.get("workload") if context.get("dag") else None
    exception = context.get("exception")
    message = (f"retrain: task {dag_id}.{getattr(ti, 'task_id', '?')} (run {getattr(ti, 'run_id', '?')}, "
               f"try {getattr(ti, 'try_number', '?')}) failed: {exception}")
    log.error(message)
    try:
        recipients = config.load(workload).defaults.notify.email if workload else []
    except ConfigError:
        recipients = []
    if recipients:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        SmtpNotifier(to=recipients, subject=f"[retrain] {dag_id} failed", html_content=f"<pre>{message}</pre>").notify(context)


def permanent_errors_fail_fast(fn: Callable) -> Callable:
    """Turn errors that a retry cannot fix (bad data, bad config, a candidate that can never be judged) into
    AirflowFailException: no retry. Everything else (MLflow or the network down, a full disk) is retried with the
    workload's backoff."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PERMANENT_ERRORS as exc:
            from airflow.sdk.exceptions import AirflowFailException

            if isinstance(exc, DataQualityError):  # no run can train it: the freshness reconcile leaves it be
                from retrain import freshness

                for version in exc.rejects:
                    freshness.record_rejected(exc.dataset, version, str(exc))
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper
