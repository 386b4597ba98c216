"""
### ingest_power

**Trigger:** by default it runs continuously; each run waits (deferred in the triggerer, holding no worker slot)
until files appear in the landing zone's `household_power/` folder. In the sqs profile (`RETRAIN_ARRIVALS=sqs`)
it is scheduled on the `landing.household_power` asset instead: `route_arrivals` emits one event per batch of
S3 notifications, and a run takes exactly the objects its events name (a manual run: everything waiting).

**Produces:** for every landed UCI power file, an immutable curated snapshot
(`curated/household_power/version=<sha>/`: parquet + manifest) and one `household_power` asset event whose
extra names it (`schema, uri, version, sha256, rows, source_files`).

Re-landing a file already ingested archives it and emits nothing (the task is skipped). A file that cannot be
parsed goes to `quarantine/household_power/` with a `.reason.json` beside it and fails its task without retry.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from retrain import config
from retrain.airflow.arrivals import landed_names, landing_inlets, landing_schedule, landing_sensor
from retrain.airflow.assets import data_asset
from retrain.airflow.defaults import dag_kwargs
from retrain.airflow.failures import permanent_errors_fail_fast

DATASET = "household_power"
HOUSEHOLD_POWER = data_asset(DATASET)
ingest_cfg = config.load("ingest")

with DAG(
    dag_id="ingest_power",
    schedule=landing_schedule(DATASET),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    doc_md=__doc__,
    params={"workload": "ingest"},
    **dag_kwargs("ingest"),
):
    wait_for_landing = landing_sensor(
        DATASET,
        task_id="wait_for_landing",
        doc="Waits for any file in landing/household_power/.",
        poke_interval=ingest_cfg.poke_interval_seconds,
        timeout=ingest_cfg.wait_timeout_hours * 3600,
    )

    @task(inlets=landing_inlets(DATASET))
    @permanent_errors_fail_fast
    def list_landed(**context) -> list[str]:
        """Names of the files this run ingests (those its events name, or all waiting in landing/household_power/)."""
        return landed_names(context, DATASET)

    @task(outlets=[HOUSEHOLD_POWER], multiple_outputs=False)
    @permanent_errors_fail_fast
    def ingest(file_name: str, *, outlet_events=None, run_id=None) -> dict:
        """One landed file -> one committed snapshot -> one household_power event."""
        from airflow.sdk.exceptions import AirflowSkipException

        from retrain.ingest import power

        result = power.ingest_file(file_name, run_id)
        if not result.emits_event:
            raise AirflowSkipException(f"{file_name}: already ingested as snapshot {result.snapshot.version}; no event")
        extra = result.snapshot.event_extra()
        outlet_events[HOUSEHOLD_POWER].extra = extra
        return extra

    files = list_landed()
    if wait_for_landing is not None:
        wait_for_landing >> files
    ingest.expand(file_name=files)
