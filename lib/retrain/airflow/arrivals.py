"""Arrivals: the landing folder checked by a sensor (sensor profile), or S3 notifications on SQS routed to
``landing.<dataset>`` events (sqs profile). Which one is the environment's choice (``RETRAIN_ARRIVALS``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset

from retrain import assets, config
from retrain.airflow.assets import landing_asset

log = logging.getLogger(__name__)


def event_driven_arrivals() -> bool:
    from retrain.settings import get_settings

    return get_settings().event_driven_arrivals


def landing_schedule(dataset: str):
    """An ingest DAG's schedule: its ``landing.<dataset>`` asset (sqs profile), else ``@continuous`` + sensor."""
    return landing_asset(dataset) if event_driven_arrivals() else "@continuous"


def landing_sensor(dataset: str, subpath: str = "*", *, folder: bool = False, **kwargs):
    """A deferrable wait for ``landing/<dataset>/<subpath>`` (a folder: for its ``_SUCCESS`` on an object store):
    a FileSensor on the local landing folder, an S3KeySensor on an ``s3://`` one; None in the sqs profile,
    where events, not a sensor, start the run. ``kwargs`` go to the sensor (task_id, doc, timeout, ...)."""
    from retrain.settings import get_settings

    settings = get_settings()
    if event_driven_arrivals() and dataset in assets.LANDING_ASSETS:
        return None
    if not settings.is_remote_data:
        from airflow.providers.standard.sensors.filesystem import FileSensor

        return FileSensor(fs_conn_id="retrain_landing", filepath=f"{dataset}/{subpath}" + ("/*" if folder else ""),
                          deferrable=True, **kwargs)
    from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor

    from retrain.ingest.landing import DROP_COMPLETE

    return S3KeySensor(bucket_key=settings.landing(dataset, subpath, DROP_COMPLETE if folder else ""),
                       wildcard_match=True, aws_conn_id=settings.storage_conn_id, deferrable=True, **kwargs)


def landing_inlets(dataset: str) -> list[Asset]:
    """An event-driven ingest task reads its landing asset's recent events (see ``events_to_handle``)."""
    return [landing_asset(dataset)] if event_driven_arrivals() else []


def events_to_handle(context: Mapping[str, Any], asset: Asset) -> list[dict]:
    """The extras of the events of ``asset`` this run handles, oldest first: those that triggered it, and any
    recent one that no run of this DAG consumed.

    Airflow 3.3.2 queues one entry per asset and DAG; a run created from it consumes the events up to the
    entry's creation, so an event that lands while the entry waits (the DAG at ``max_active_runs``, or just a
    busy scheduler) is consumed by no run until the asset's next event (apache/airflow#56050). For an arrival
    that next event may never come. The task reads the asset's events of the last
    ``arrivals.unconsumed_lookback_minutes`` (an inlet) and takes those too; what it takes twice is harmless
    (the router's ledger and the ingest's landing check drop repeats)."""
    triggering_accessor = context.get("triggering_asset_events") or {}
    try:
        triggering = list(triggering_accessor[asset])
    except KeyError:
        triggering = []
    inlet_events = context.get("inlet_events")
    strays = []
    if inlet_events is not None and event_driven_arrivals():  # elsewhere the task declares no inlet
        from datetime import datetime, timezone

        from airflow.sdk.exceptions import AirflowRuntimeError

        minutes = config.load("ingest").arrivals.unconsumed_lookback_minutes
        since = datetime.now(timezone.utc) - timedelta(minutes=minutes)
        dag_id = context["ti"].dag_id
        # the events that triggered this run list it among their runs, so they are not taken twice
        try:
            strays = [e for e in inlet_events[asset].after(since.isoformat())
                      if not any(r.dag_id == dag_id for r in e.created_dagruns)]
        except AirflowRuntimeError as exc:
            # apache/airflow#71360 (3.3.2): the listing fails while a run an event created is queued, not
            # started. That run will look for strays itself when it starts; the reconcile sweep is the backstop.
            log.warning("%s: could not list the recent events of %s (%s); handling the triggering ones only",
                        dag_id, asset.name, exc)
        if strays:
            log.warning("%s: %d event(s) of %s no run consumed (apache/airflow#56050); handling them here: %s",
                        dag_id, len(strays), asset.name, [e.id for e in strays])
    return [dict(e.extra or {}) for e in sorted(triggering + strays, key=lambda e: e.timestamp)]


def landed_names(context: Mapping[str, Any], dataset: str) -> list[str]:
    """What an ingest run takes: the names its landing events name that are still waiting (sqs profile),
    else (sensor profile, or a manual run) every name waiting in the landing folder."""
    from retrain.ingest import landing

    dag_run = context.get("dag_run")
    triggered = dag_run is not None and dag_run.run_type == "asset_triggered"
    events = events_to_handle(context, landing_asset(dataset)) if event_driven_arrivals() and triggered else []
    if not events:
        return landing.pending(dataset)
    from retrain import arrivals

    return arrivals.select(dataset, events)


def arrivals_schedule():
    """``route_arrivals``' schedule: each SQS batch (the watched ``landing_arrivals`` asset) or the reconcile
    cron (sqs profile); None elsewhere."""
    if not event_driven_arrivals():
        return None
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    cfg = config.load("ingest").arrivals
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cfg.reconcile_cron, timezone="UTC"),
                               assets=arrivals_asset(watched=True))


def arrivals_asset(*, watched: bool = False) -> Asset:
    """The asset the SQS watcher's batches are events of. ``watched``: with its ``AssetWatcher`` (the SQS
    trigger). Every reference to it in a DAG must be the watched one: the dag processor keeps one definition per
    asset, the last it meets (task inlets come after the schedule), and one without watchers removes the
    watcher from the triggerer."""
    watchers = []
    if watched:
        from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
        from airflow.sdk import AssetWatcher

        from retrain.settings import get_settings

        settings, cfg = get_settings(), config.load("ingest").arrivals
        trigger = MessageQueueTrigger(scheme="sqs", sqs_queue=settings.sqs_queue_url,
                                      aws_conn_id=settings.storage_conn_id, max_messages=cfg.sqs_max_messages,
                                      wait_time_seconds=cfg.sqs_wait_seconds, waiter_delay=cfg.sqs_idle_seconds)
        watchers = [AssetWatcher(name=f"{assets.ARRIVALS_ASSET}_sqs", trigger=trigger)]
    return Asset(name=assets.ARRIVALS_ASSET, uri=assets.arrivals_uri(), group="landing", watchers=watchers)


def arrivals_inlets() -> list[Asset]:
    """``route_arrivals``' inlet (to read the events no run consumed): the watched asset, see ``arrivals_asset``."""
    return [arrivals_asset(watched=True)] if event_driven_arrivals() else []


LANDING_EVENTS_KEY = "landing_events"


def route_arrivals(context: Mapping[str, Any]) -> dict:
    """The router task: routes the SQS message batches of its events (and of any no run consumed); a run that no
    event triggered (the reconcile cron, a manual run) also sweeps the landing zone. The extra of one
    ``landing.<dataset>`` event per dataset with objects to ingest goes to XCom ``LANDING_EVENTS_KEY``, for the
    dataset's publishing task (:func:`retrain.airflow.publishing.publish_landing`); returns the summary."""
    from retrain import arrivals

    extras = events_to_handle(context, arrivals_asset())
    result = arrivals.dispatch(arrivals.message_bodies(extras), context["run_id"]) if extras else arrivals.Dispatch()
    if context["dag_run"].run_type != "asset_triggered":  # the reconcile cron, or a manual run
        minutes = config.load("ingest").arrivals.reconcile_min_age_minutes
        result.merge(arrivals.sweep(context["run_id"], timedelta(minutes=minutes)))
    context["ti"].xcom_push(key=LANDING_EVENTS_KEY, value=result.events)
    return result.summary()
