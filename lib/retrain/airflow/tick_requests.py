"""An ingest of a tick partition asks for tick training (one queued run, however many partitions land)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def request_tick_training(*, task_id: str, committed_by: str, doc_md: str = ""):
    """A ``TriggerDagRunOperator`` for ``time_series_training`` that asks for a run only when none is queued
    (see :func:`retrain.workloads.timeseries.training_request`): a queued run reads every commit when it
    starts, so a backfill of N partitions never queues N runs. ``committed_by``: the task whose return value is
    the committed ``ticks`` event extra. One run per asking DAG run, however often the task is retried."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    def only_when_none_is_queued(context: Mapping[str, Any]) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        from retrain.workloads import timeseries

        ti = context["ti"]
        partition = (ti.xcom_pull(task_ids=committed_by) or {}).get("partition", "?")
        reason = timeseries.training_request(partition, ti.get_dr_count(dag_id=timeseries.WORKLOAD, states=["queued"]))
        if reason:
            raise AirflowSkipException(reason)

    return TriggerDagRunOperator(task_id=task_id, trigger_dag_id="time_series_training", logical_date=None,
                                 trigger_run_id="ticks_commit__{{ run_id }}", skip_when_already_exists=True,
                                 pre_execute=only_when_none_is_queued, doc_md=doc_md)
