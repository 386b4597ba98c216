"""Airflow glue: the only library module that imports Airflow.

DAG files call into here for their assets, defaults and context handling, and into the rest of
:mod:`retrain` for the work itself. Everything here is cheap at import: DAG files parse it on every loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import wraps
from typing import Any

from airflow.sdk import Asset

from retrain import assets, config
from retrain.errors import (CandidateError, ConfigError, DataFormatError, DataQualityError, LandingPathError,
                            SnapshotError)

log = logging.getLogger(__name__)

# Errors that another try cannot fix: the task fails at once, without retry.
PERMANENT_ERRORS = (DataQualityError, DataFormatError, SnapshotError, ConfigError, LandingPathError, CandidateError)


DEFAULT_QUEUE, GPU_QUEUE = "default", "gpu"

CHAMPIONS_ALIAS = "retrain_champions"
REJUDGE_ALIAS = "retrain_rejudge"  # candidate events emitted again for a challenger whose comparison went stale
CANDIDATES_ALIAS = "retrain_candidates"


def data_asset(name: str) -> Asset:
    spec = assets.data_asset(name)
    return Asset(name=spec.name, uri=spec.uri, group="data", extra={"workload": spec.workload})


def candidate_asset(model: str) -> Asset:
    spec = assets.CANDIDATE_ASSETS[model]
    return Asset(name=spec.name, uri=spec.uri, group="model", extra={"model": model, "dataset": spec.dataset})


def champion_asset(model: str) -> Asset:
    spec = assets.CHAMPION_ASSETS[model]
    return Asset(name=spec.name, uri=spec.uri, group="model", extra={"model": model, "dataset": spec.dataset})


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

                freshness.record_rejected(exc.dataset, exc.version, str(exc))
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper


def run_coordinates(context: Mapping[str, Any]) -> dict[str, Any]:
    """dag id, run id, try number, task id and a link to the run in the Airflow UI."""
    ti = context["ti"]
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
    return {
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "try_number": int(getattr(ti, "try_number", 1) or 1),
        "task_id": ti.task_id,
        "url": f"{base}/dags/{ti.dag_id}/runs/{ti.run_id}",
    }


def work_folder(context: Mapping[str, Any], dataset: str) -> str:
    """The folder the tasks of this training run share for ``dataset``."""
    from retrain.settings import get_settings

    ti = context["ti"]
    return get_settings().training_work(ti.dag_id, ti.run_id, dataset)


def data_events(context: Mapping[str, Any], dataset: str) -> list[dict]:
    """The data events this run must act on, oldest first.

    Asset-triggered runs: the triggering events of ``dataset``. Manual runs: the ``version`` param's snapshot
    if given, else the latest event recorded for the asset (the task must declare the asset as an inlet).
    """
    asset = data_asset(dataset)
    triggering = context.get("triggering_asset_events") or {}
    try:
        events = list(triggering[asset])
    except KeyError:
        events = []
    if events:
        return [dict(e.extra) for e in sorted(events, key=lambda e: e.timestamp)]
    params = context.get("params") or {}
    if params.get("version"):
        from retrain import snapshots

        snapshot = snapshots.load(dataset, str(params["version"]), params.get("partition") or None)
        if snapshot is None:
            raise SnapshotError(f"{dataset}: no committed snapshot with version {params['version']!r}")
        return [snapshot.event_extra()]
    inlet_events = context.get("inlet_events")
    history = list(inlet_events[asset]) if inlet_events is not None else []
    if not history:
        raise SnapshotError(f"{dataset}: run was not triggered by an event, no 'version' param was given, "
                            "and the asset has no events yet")
    return [dict(history[-1].extra)]


def image_events(context: Mapping[str, Any], datasets: tuple[str, ...]) -> list[dict]:
    """The newest triggering event of each dataset that triggered the run (by the data's own time, see
    :func:`retrain.events.newest`), with the versions it supersedes; for a manual run, the ``dataset`` param's
    snapshot (``version`` param, else the asset's latest event)."""
    from retrain import events as data_events_

    triggering = context.get("triggering_asset_events") or {}
    chosen = []
    for dataset in datasets:
        try:
            events = sorted(triggering[data_asset(dataset)], key=lambda e: e.timestamp)
        except KeyError:
            continue
        if events:
            newest, superseded = data_events_.newest([dict(e.extra) for e in events], dataset)
            chosen.append(newest | {"superseded_versions": superseded})
    if not chosen:
        dataset = (context.get("params") or {}).get("dataset")
        if not dataset:
            raise SnapshotError(f"manual runs must name a dataset (one of {list(datasets)})")
        chosen = [_newest_snapshot(context, dataset)]
    return chosen


def image_snapshots_to_train(context: Mapping[str, Any], datasets: tuple[str, ...]) -> list[dict]:
    """:func:`image_events`, each claimed in the freshness ledger on its own: a cifar10 snapshot another run
    holds leaves this run's mnist training alone. Skips the run when no dataset is left."""
    claimed = [event for event in image_events(context, datasets)
               if claim_snapshot(context, event["dataset"], event["version"])]
    if not claimed:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException("every snapshot this run resolved is trained or being trained by another run")
    return claimed


def _newest_snapshot(context: Mapping[str, Any], dataset: str) -> dict:
    from retrain import events

    chosen, superseded = events.newest(data_events(context, dataset), dataset)
    requested = [str(v) for v in (context.get("params") or {}).get("supersedes") or []]
    return chosen | {"superseded_versions": list(dict.fromkeys(superseded + requested))}


def snapshot_to_train(context: Mapping[str, Any], dataset: str) -> dict:
    """The event extra of the snapshot this run trains: the newest of its events by the data's own time, with
    ``superseded_versions`` (the other events' versions, plus the ``supersedes`` param of a run the freshness
    reconcile triggered). The run claims it first, and trains nothing (skipped) when another run holds it."""
    chosen = _newest_snapshot(context, dataset)
    if not claim_snapshot(context, dataset, chosen["version"]):
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"{dataset} snapshot {chosen['version']}: trained or being trained by another run")
    return chosen


def run_active(context: Mapping[str, Any]) -> Callable[[str, str], bool]:
    """``active(dag_id, run_id)``: whether that run is queued or running, through the Task SDK (which reaches
    the metadata database from any worker; a run that does not exist is not active)."""
    ti = context["ti"]
    return lambda dag_id, run_id: bool(ti.get_dr_count(dag_id=dag_id, run_ids=[run_id], states=["queued", "running"]))


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


def candidate_events(context: Mapping[str, Any], candidates: list[Asset] | None = None) -> list[dict]:
    """Candidate-model events this run judges, oldest first: the triggering ones, else the ``run_id`` param's,
    else the latest event of the ``candidates`` assets (the task's inlets)."""
    candidates = candidates or [candidate_asset(model) for model in assets.MODELS]
    triggering = context.get("triggering_asset_events") or {}
    events = []
    for asset in candidates:
        try:
            events += list(triggering[asset])
        except KeyError:
            continue
    if events:
        return [dict(e.extra) for e in sorted(events, key=lambda e: e.timestamp)]
    params = context.get("params") or {}
    if params.get("candidate_run_id"):
        from retrain import tracking

        from retrain.events import CandidateEvent

        run = tracking.client().get_run(params["candidate_run_id"])
        return [CandidateEvent.read(json.loads(run.data.tags["retrain.candidate_event"])).extra()]
    inlet_events = context.get("inlet_events")
    latest = []
    for asset in candidates:
        history = list(inlet_events[asset]) if inlet_events is not None else []
        if history:
            latest.append(history[-1])
    if not latest:
        raise SnapshotError("no candidate event triggered this run and no 'candidate_run_id' param was given")
    return [dict(max(latest, key=lambda e: e.timestamp).extra)]


def by_judge_queue(events: list[dict]) -> dict[str, list[dict]]:
    """Candidate events split by the Celery queue whose workers can score them (order kept in each)."""
    from retrain import catalog

    split: dict[str, list[dict]] = {DEFAULT_QUEUE: [], GPU_QUEUE: []}
    for event in events:  # the catalog's scoring queue: models that load PyTorch are judged where torch is
        split[catalog.model(event["model"]).scoring_queue].append(event)
    return split


def emit_champion_event(outlet_events, decision: Mapping[str, Any], **extra: Any) -> None:
    """The ``<model>.champion`` event of one alias move, through the champions alias."""
    from airflow.sdk import AssetAlias

    from retrain.events import ChampionEvent

    model, version = decision["model"], decision["version"]
    outlet_events[AssetAlias(name=CHAMPIONS_ALIAS)].add(
        champion_asset(model),
        extra=ChampionEvent.of(model, version, run_id=decision.get("candidate_run_id") or decision.get("run_id"),
                               previous_champion=decision.get("previous_champion"),
                               metrics=decision.get("metrics", {}), **extra).extra(),
    )


def apply_review(context: Mapping[str, Any], result: Mapping[str, Any]) -> None:
    """``post_execute`` of the review ApprovalOperator: apply the reviewer's answer to the challenger.

    Approval moves ``champion`` (under the model's registry lock) and publishes the champion event; rejection,
    or no answer before the timeout (the operator's default option), records who rejected and why on the
    version. An approval whose comparison went stale (the champion moved meanwhile) expires instead, and the
    candidate event is emitted again so the candidate is judged against the champion now in service.
    """
    from retrain.workloads import promote

    ti = context["ti"]
    details = ti.xcom_pull(task_ids="review_requests", key="reviews")[max(ti.map_index, 0)]
    chosen = (result or {}).get("chosen_options") or ["Reject"]
    user = (result or {}).get("responded_by_user") or {}
    by = user.get("name") or user.get("id") or "timeout (default: reject)"
    comment = ((result or {}).get("params_input") or {}).get("comment", "")
    outcome = promote.approve(details["model"], details["version"], approved=chosen[0] == "Approve", by=str(by),
                              comment=comment, expected_champion=details["expected_champion"],
                              run_id=details["run_id"], coordinates=run_coordinates(context))
    if outcome["promote"]:
        emit_champion_event(context["outlet_events"], details | outcome, approved_by=str(by))
    elif outcome["outcome"] == "expired" and details.get("event"):
        from airflow.sdk import AssetAlias

        context["outlet_events"][AssetAlias(name=REJUDGE_ALIAS)].add(
            candidate_asset(details["model"]), extra=details["event"] | {"rejudge": outcome["reason"]})


def ensure_pools(sizes: Mapping[str, int] | None = None) -> None:
    """Create or resize the workload pools (idempotent) as ``configs/deployment.yaml`` sizes them: ``gpu`` (one
    slot per GPU) and ``cpu``; ``sizes`` overrides single pools."""
    import os

    from airflow.models.pool import Pool

    wanted = config.deployment().pool_slots(os.cpu_count() or 2) | dict(sizes or {})
    for name, slots in wanted.items():
        Pool.create_or_update_pool(name=name, slots=slots, description=f"retrain {name} workloads",
                                   include_deferred=False)


def claim_window(context: Mapping[str, Any], window: Mapping[str, Any]) -> bool:
    """Claim a resolved tick window (its digest's prefix is the version the freshness reconcile tracks)."""
    return claim_snapshot(context, "ticks", str(window["window_digest"])[:16])


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


# --- freshness: the reconcile_freshness DAG (design contract 8) -------------------------------------------

def reconcile_schedule() -> timedelta:
    """How often the freshness reconcile looks (``configs/reconcile.yaml``)."""
    return timedelta(seconds=config.load("reconcile").freshness.interval_seconds)


def reconcile_freshness(context: Mapping[str, Any]) -> list[dict]:
    """One pass of :func:`retrain.freshness.reconcile`: the ``TriggerDagRunOperator`` arguments of the training
    runs to start (one per snapshot that no run trained within its time). Only a queued or running run that
    claimed the snapshot (or was triggered for it) is waited for; its state comes through the Task SDK."""
    from retrain import freshness

    return [t.as_kwargs() for t in freshness.reconcile(run_active(context))]


# --- arrivals: the landing folder (sensor profile) or S3 notifications on SQS (sqs profile) ---------------

LANDING_ALIAS = "retrain_landing"


def landing_alias():
    """The alias the router emits ``landing.<dataset>`` events through (only the datasets that got objects)."""
    from airflow.sdk import AssetAlias

    return AssetAlias(name=LANDING_ALIAS)


def event_driven_arrivals() -> bool:
    from retrain.settings import get_settings

    return get_settings().event_driven_arrivals


def landing_asset(dataset: str) -> Asset:
    spec = assets.LANDING_ASSETS[dataset]
    return Asset(name=spec.name, uri=spec.uri, group="landing", extra={"dataset": dataset})


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


def route_arrivals(context: Mapping[str, Any]) -> dict:
    """The router task: routes the SQS message batches of its events (and of any no run consumed); a run that no
    event triggered (the reconcile cron, a manual run) also sweeps the landing zone. One ``landing.<dataset>`` event per dataset with objects to ingest."""
    from retrain import arrivals

    extras = events_to_handle(context, arrivals_asset())
    result = arrivals.dispatch(arrivals.message_bodies(extras), context["run_id"]) if extras else arrivals.Dispatch()
    if context["dag_run"].run_type != "asset_triggered":  # the reconcile cron, or a manual run
        minutes = config.load("ingest").arrivals.reconcile_min_age_minutes
        result.merge(arrivals.sweep(context["run_id"], timedelta(minutes=minutes)))
    for dataset, extra in result.events.items():
        context["outlet_events"][landing_alias()].add(landing_asset(dataset), extra=extra)
    return result.summary()
