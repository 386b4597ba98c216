"""
### ingest_ticks

**Trigger:** a daily partition timetable: the run at 01:00 UTC owns the previous UTC day's partition key
(`YYYY-MM-DD`). `airflow backfill create --dag-id ingest_ticks --from-date … --to-date …` (or
`retrain backfill ticks FROM TO`) rebuilds exactly a range of partitions, at most `max_active_runs` at a time.

**Steps:** skip a partition whose day the feed is closed (`closed_weekdays` in `configs/feeds.yaml`: FX
sessions ending on a weekend) → wait, deferred in the triggerer, for `landing/ticks/date=<key>/` (CSV or parquet files; on an S3 data
root, for its `_SUCCESS` object, written last; a partition that never lands times out with a clear message and
fails only its own run) → normalise into sorted hive-style parquet with a manifest, committed as a new
immutable version `curated/ticks/date=<key>/version=<v>/` that then becomes current (earlier builds stay
readable; their raw files stay archived; only `retrain gc` removes old versions). S3 notifications play no
part here, even in the sqs profile: the timetable already says when a partition is due, and the wait is one
cheap deferred check.

**Produces:** a `ticks` asset event for that partition (partition key set) naming the version, only when its
content changed; then `request_training` starts one `time_series_training` run unless one is queued
already (that run reads this commit when it starts), so a backfill of N partitions never queues N runs.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, CronPartitionTimetable, Param, task

from retrain import config
from retrain.airflow.arrivals import landing_sensor
from retrain.airflow.assets import data_asset
from retrain.airflow.defaults import dag_kwargs
from retrain.airflow.failures import permanent_errors_fail_fast
from retrain.airflow.tick_requests import request_tick_training

TICKS = data_asset("ticks")
ingest_cfg = config.load("ingest")
wait_hours = config.load("time_series_training").partition_wait_hours

with DAG(
    dag_id="ingest_ticks",
    schedule=CronPartitionTimetable("0 1 * * *", timezone="UTC", run_offset=-1, key_format="%Y-%m-%d"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    doc_md=__doc__,
    params={"workload": "ingest", "partition": Param(None, type=["null", "string"], description="Manual run: YYYY-MM-DD")},
    **(dag_kwargs("ingest") | {"max_active_runs": 3}),
):
    @task.short_circuit(ignore_downstream_trigger_rules=True)
    @permanent_errors_fail_fast
    def trading_day(*, dag_run=None, params=None) -> bool:
        """False (the rest of the run skipped) for a partition whose day the feed is closed."""
        partition = dag_run.partition_key or params["partition"]
        open_ = config.feed("ticks").trades_on(partition)
        if not open_:
            print(f"partition {partition}: the feed is closed that day (closed_weekdays in configs/feeds.yaml)")
        return open_

    wait_for_partition = landing_sensor(
        "ticks",
        "date={{ dag_run.partition_key or params.partition }}",
        folder=True,
        task_id="wait_for_partition",
        doc="Waits for landing/ticks/date=<partition key>/.",
        poke_interval=ingest_cfg.poke_interval_seconds,
        timeout=int(wait_hours * 3600),
    )

    @task(outlets=[TICKS], multiple_outputs=False)
    @permanent_errors_fail_fast
    def ingest_partition(*, dag_run=None, params=None, outlet_events=None, run_id=None) -> dict:
        """The partition's snapshot; a `ticks` event when its content changed."""
        from airflow.sdk.exceptions import AirflowSkipException

        from retrain.ingest import ticks

        partition = dag_run.partition_key or params["partition"]
        result = ticks.ingest_partition(partition, run_id)
        if not result.emits_event:
            raise AirflowSkipException(f"partition {partition} unchanged (snapshot {result.snapshot.version}); no event")
        extra = result.snapshot.event_extra()
        outlet_events[TICKS].extra = extra
        return extra

    ingest = ingest_partition()
    trading_day() >> wait_for_partition >> ingest >> request_tick_training(
        task_id="request_training", committed_by="ingest_partition",
        doc_md="Starts a time_series_training run unless one is queued (it reads this commit when it starts).")
