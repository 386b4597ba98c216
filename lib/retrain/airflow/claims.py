"""Claims in the freshness ledger (design contract 8): a training run claims the snapshot it resolved before
it trains, and trains nothing (skipped) when another run holds it, a newer one, or trained it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from retrain.airflow.runs import image_events, newest_snapshot, run_active

log = logging.getLogger(__name__)


def claim_snapshot(context: Mapping[str, Any], dataset: str, version: str) -> bool:
    """Claim a resolved snapshot for this run in the freshness ledger (:func:`retrain.freshness.claim`); logs
    and returns False when another run holds it, a newer one, or trained it. A manual run always claims."""
    from retrain import freshness

    ti, dag_run = context["ti"], context.get("dag_run")
    manual = dag_run is not None and str(dag_run.run_type).lower().endswith("manual") \
        and not freshness.is_reconcile_run(ti.run_id)
    newer = [] if dataset == "ticks" or manual else freshness.newer_versions(dataset, version)
    granted, reason = freshness.claim(
        dataset, version, dag_id=ti.dag_id, run_id=ti.run_id, active=run_active(context), newer=newer,
        trained_runs=lambda: freshness.trained(ti.dag_id, dataset).runs, force=manual)
    (log.info if granted else log.warning)("freshness: %s", reason)
    return granted


def claim_window(context: Mapping[str, Any], window: Mapping[str, Any]) -> bool:
    """Claim a resolved tick window (its digest's prefix is the version the freshness reconcile tracks)."""
    return claim_snapshot(context, "ticks", str(window["window_digest"])[:16])


def snapshot_to_train(context: Mapping[str, Any], dataset: str) -> dict:
    """The event extra of the snapshot this run trains: the newest of its events by the data's own time, with
    ``superseded_versions`` (the other events' versions, plus the ``supersedes`` param of a run the freshness
    reconcile triggered). The run claims it first, and trains nothing (skipped) when another run holds it."""
    chosen = newest_snapshot(context, dataset)
    if not claim_snapshot(context, dataset, chosen["version"]):
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"{dataset} snapshot {chosen['version']}: trained or being trained by another run")
    return chosen


def image_snapshots_to_train(context: Mapping[str, Any], datasets: tuple[str, ...]) -> list[dict]:
    """:func:`retrain.airflow.runs.image_events`, each claimed in the freshness ledger on its own: a cifar10
    snapshot another run holds leaves this run's mnist training alone. Skips the run when no dataset is left."""
    claimed = [event for event in image_events(context, datasets)
               if claim_snapshot(context, event["dataset"], event["version"])]
    if not claimed:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException("every snapshot this run resolved is trained or being trained by another run")
    return claimed
