"""The ``reconcile_freshness`` DAG's side of design contract 8: how often it looks, and one pass."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from retrain import config
from retrain.airflow.runs import run_active


def reconcile_schedule() -> timedelta:
    """How often the freshness reconcile looks (``configs/reconcile.yaml``)."""
    return timedelta(seconds=config.load("reconcile").freshness.interval_seconds)


def reconcile_freshness(context: Mapping[str, Any]) -> list[dict]:
    """One pass of :func:`retrain.freshness.reconcile`: the ``TriggerDagRunOperator`` arguments of the training
    runs to start (one per snapshot that no run trained within its time). Only a queued or running run that
    claimed the snapshot (or was triggered for it) is waited for; its state comes through the Task SDK."""
    from retrain import freshness

    return [t.as_kwargs() for t in freshness.reconcile(run_active(context))]
