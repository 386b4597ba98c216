"""What a task reads from its Airflow context: the run's coordinates and work folder, and the asset events
the run acts on (never "the latest" files)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from airflow.sdk import Asset

from retrain import assets
from retrain.airflow.assets import candidate_asset, data_asset
from retrain.errors import SnapshotError


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


def run_active(context: Mapping[str, Any]) -> Callable[[str, str], bool]:
    """``active(dag_id, run_id)``: whether that run is queued or running, through the Task SDK (which reaches
    the metadata database from any worker; a run that does not exist is not active)."""
    ti = context["ti"]
    return lambda dag_id, run_id: bool(ti.get_dr_count(dag_id=dag_id, run_ids=[run_id], states=["queued", "running"]))


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


def newest_snapshot(context: Mapping[str, Any], dataset: str) -> dict:
    """The newest of :func:`data_events` by the data's own time, with ``superseded_versions`` (the other
    events' versions, plus the ``supersedes`` param of a run the freshness reconcile triggered)."""
    from retrain import events

    chosen, superseded = events.newest(data_events(context, dataset), dataset)
    requested = [str(v) for v in (context.get("params") or {}).get("supersedes") or []]
    return chosen | {"superseded_versions": list(dict.fromkeys(superseded + requested))}


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
        chosen = [newest_snapshot(context, dataset)]
    return chosen


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
