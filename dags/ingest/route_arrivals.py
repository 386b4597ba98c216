"""
### route_arrivals

**Trigger (sqs profile, `RETRAIN_ARRIVALS=sqs`):** every batch of S3 notifications that the `landing_arrivals`
asset's watcher (`MessageQueueTrigger(scheme="sqs")` on `RETRAIN_SQS_QUEUE_URL`, one poller for every dataset)
takes from the queue; and, on `ingest.yaml: arrivals.reconcile_cron`, a sweep of the landing zone. In the
default profile the ingest DAGs watch the landing folder themselves and this DAG is unscheduled.

**Produces:** at most one `landing.<dataset>` event per dataset and run, whose extra names exactly the object
keys to ingest (`keys`, `names`), published by the dataset's `publish_landing_<dataset>` task (skipped when
nothing landed for it); `ingest_power`, `ingest_mnist` and `ingest_cifar10` are scheduled on them.
Routing is by key prefix: `landing/household_power/<file>`, `landing/<mnist|cifar10>/<drop>/_SUCCESS`.

**Events no run consumed:** Airflow 3.3.2 leaves an event that lands while the DAG waits for a run slot
unconsumed until the asset's next event (apache/airflow#56050); every run also routes the recent events no run
of this DAG consumed (the ledger drops what was already named). The ingest DAGs do the same with their
landing events.

**Dropped (logged, never an event):** messages that are not S3 notifications, `s3:TestEvent`, keys outside the
landing prefix or in no routed dataset's folder, a repeated notification of an object already named, an object
already gone from landing. The watcher deletes messages on reception, so the sweep names every object that has
waited `reconcile_min_age_minutes` with no event (a lost message or a failed run); see `retrain.arrivals`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from retrain import assets
from retrain.airflow import publishing
from retrain.airflow.arrivals import LANDING_EVENTS_KEY, arrivals_inlets, arrivals_schedule, route_arrivals
from retrain.airflow.assets import landing_asset
from retrain.airflow.defaults import dag_kwargs
from retrain.airflow.failures import permanent_errors_fail_fast

with DAG(
    dag_id="route_arrivals",
    schedule=arrivals_schedule(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    doc_md=__doc__,
    params={"workload": "ingest"},
    **dag_kwargs("ingest"),
):

    @task(inlets=arrivals_inlets(), multiple_outputs=False)
    @permanent_errors_fail_fast
    def route(**context) -> dict:
        """One landing.<dataset> event per dataset with new objects (from SQS messages, or the sweep)."""
        return route_arrivals(context)

    @task(multiple_outputs=False)
    @permanent_errors_fail_fast
    def publish_landing(events: dict, *, dataset: str, outlet_events=None) -> dict:
        """The `landing.<dataset>` event naming the objects to ingest (skipped when none landed for the dataset)."""
        return publishing.publish_landing(outlet_events, landing_asset(dataset), events)

    routed = route()
    for dataset in assets.LANDING_ASSETS:  # one task per dataset: its outlet names the asset's producer
        publish_landing.override(task_id=f"publish_landing_{dataset}", outlets=[landing_asset(dataset)])(
            routed[LANDING_EVENTS_KEY], dataset=dataset)
