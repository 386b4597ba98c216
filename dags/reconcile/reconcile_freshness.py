"""
### reconcile_freshness

**Trigger:** a short timetable (`configs/reconcile.yaml`, `freshness.interval_seconds`, 30 s by default).

**Why:** an asset event does not always become a training run: several events within a second may create
runs for only some of them (apache/airflow#56050), an event that lands while the training DAG is paused
creates nothing, and a scheduler killed between producer and consumer may lose it. This DAG enforces the
freshness guarantee (design contract 8) for every workload at once.

**Steps:** `reconcile` compares each dataset's newest committed snapshot (by the data's own time) with the
newest trained one (MLflow). When the newest is untrained after `act_after_seconds` and no queued or running
run holds it (each training run claims the snapshot it resolves in the ledger; runs holding other snapshots
are not waited for), it records the version in the ledger and `trigger` starts one training run for it (run
id `freshness__<dataset>__<version>`, conf naming the snapshot and the untrained older ones it supersedes).
A triggered run that ended without training it is triggered again (`…__<n>`, at most 3). Each action is one
`reconcile:` line in the task log; when the scheduler consumes every event, the pass triggers nothing.

The same pass asks one promotion run (`freshness__promote__<run id>`) for a candidate that no promotion judged
within F of its end: a candidate event can be attached to no run too, and judging is idempotent.

**Produces:** at most one training run per snapshot version and one promotion run per unjudged candidate;
ledger entries under `work/freshness/`.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, task

from retrain.airflow.defaults import dag_kwargs
from retrain.airflow.failures import permanent_errors_fail_fast
from retrain.airflow.reconcile import reconcile_freshness, reconcile_schedule

WORKLOAD = "reconcile"

with DAG(
    dag_id="reconcile_freshness",
    schedule=reconcile_schedule(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    doc_md=__doc__,
    params={"workload": WORKLOAD},
    **dag_kwargs(WORKLOAD),
):

    @task
    @permanent_errors_fail_fast
    def reconcile(**context) -> list[dict]:
        """The training runs to start, one per snapshot no run trained (recorded in the ledger first)."""
        return reconcile_freshness(context)

    TriggerDagRunOperator.partial(
        task_id="trigger", logical_date=None, skip_when_already_exists=True,
        doc_md="Start one training run; a run with this snapshot's run id already there is skipped.",
    ).expand_kwargs(reconcile())
