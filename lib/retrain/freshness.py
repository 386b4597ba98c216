"""Freshness (design contract 8): within F of its commit, every snapshot is trained, or superseded by a newer
trained snapshot that records it.

Airflow's asset events are not enough on their own: events of one asset within a second may create no run
(apache/airflow#56050), events that land while the consumer is paused create nothing, and a scheduler killed
between producer and consumer may lose the queue entry. One reconcile, shared by every workload, compares each
dataset's newest committed snapshot with the newest trained one and asks for one training run of what is
missing. It is pure bookkeeping here (no Airflow import): :mod:`retrain.airflow.reconcile` runs it from the
``reconcile_freshness`` DAG and triggers the runs it returns; ``retrain status`` prints :func:`report`.

* **Newer** means later in the data's own time: the end of a power snapshot's ``time_range``, a tick
  partition's date; data with no time axis (image drops) is ordered by commit (``sequence``). Never by the
  order in which events happened to be emitted (:func:`data_order`, also used by :func:`retrain.events.newest`).
* **Trained** means a finished, scheduled (not ad hoc) candidate run in the workload's MLflow experiment whose
  ``data.version`` is the snapshot; **superseded** means such a run lists it in ``data.superseded``, or the
  ledger recorded it as older than a snapshot that was trained already (it landed late, or its event made no
  run while a newer one trained). A snapshot that failed its quality gate is **rejected**: no training can
  change that, so it is never asked for again.
* **The ledger** holds one small JSON file per (dataset, snapshot version) under
  ``work/freshness/<dataset>/`` on the data root, written atomically: the reconcile asks for a version at most
  once, and the run it triggers has a run id derived from the version, so Airflow refuses a second one too.
* **Claims**: each training run claims the snapshot it resolved (``claims/<version>.json`` in the same folder,
  written under the lock ``freshness.<dataset>``, naming the Airflow dag and run id). A run finds the snapshot
  claimed by another queued or running run, or a newer snapshot so claimed, and trains nothing; so does a run
  whose snapshot was claimed by a finished run that trained it. A claim whose run ended without training it
  (failed, killed) counts as absent. The reconcile therefore never waits for a training DAG to go idle: it
  leaves a snapshot alone only while an active run holds it (a long cifar10 run does not delay mnist), and a
  run it triggered that ended without training the snapshot is triggered again (at most ``MAX_TRIGGERS``).
* **Cheap when nothing is wrong**: per dataset, one directory listing (manifests are read once and cached in
  the ledger folder's ``_index.json``), one claim read, at most two run-state look-ups and one MLflow search.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger(__name__)

TRIGGERED, SUPERSEDED, REJECTED = "triggered", "superseded", "rejected"
INDEX = "_index.json"
CLAIMS = "claims"
RUN_ID_PREFIX = "freshness"
MAX_TRIGGERS = 3  # runs the reconcile starts for one snapshot before it only reports it LATE

# ``active(dag_id, run_id)``: whether that Airflow run is queued or running (the glue asks the Task SDK)
RunActive = Callable[[str, str], bool]


# --- ordering by the data's own time (pure) ----------------------------------------------------------------

def _instant(text: str) -> str:
    """A timestamp as a sortable ISO string (naive and aware forms of the same data compare alike)."""
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).replace(tzinfo=None).isoformat()
    except ValueError:
        return str(text)


def data_order(manifest: Mapping[str, Any]) -> tuple:
    """Sort key of a snapshot by the data's own time: the end (then start, except in a growing series) of its
    ``time_range``, else its partition key; then commit order (``sequence``, ``created_at``) and the version,
    for data with no time axis and for ties."""
    time_range = manifest.get("time_range") or []
    end = _instant(time_range[-1]) if time_range else (manifest.get("partition") or "")
    # a growing series holds its parent's readings: the later commit of the same end is the newer
    start = _instant(time_range[0]) if time_range and not manifest.get("series") else ""
    return (end, start, int(manifest.get("sequence") or 0), str(manifest.get("created_at") or ""),
            str(manifest.get("version") or ""))


def data_label(manifest: Mapping[str, Any]) -> str:
    """The data time a person reads in logs and ``retrain status``."""
    time_range = manifest.get("time_range") or []
    if time_range:
        return f"data to {time_range[-1]}"
    if manifest.get("partition"):
        return f"partition {manifest['partition']}"
    return f"commit #{manifest.get('sequence') or '?'}"


def _parse_time(text: str | None) -> datetime:
    if not text:
        return datetime.fromtimestamp(0, timezone.utc)
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Committed:
    """One committed snapshot (or, for ticks, the newest window) as the reconcile sees it."""

    dataset: str
    version: str
    order: tuple
    committed_at: datetime
    label: str = ""
    conf: Mapping[str, Any] = field(default_factory=dict, compare=False)  # what a triggered run is told
    parts: tuple[str, ...] = ()  # ticks: the partition versions the window holds

    @classmethod
    def from_manifest(cls, dataset: str, manifest: Mapping[str, Any]) -> Committed:
        return cls(dataset=dataset, version=str(manifest["version"]), order=data_order(manifest),
                   committed_at=_parse_time(manifest.get("created_at")), label=data_label(manifest))


@dataclass(frozen=True)
class Trained:
    """What the finished training runs of a dataset say: version -> MLflow run id, and the versions they
    recorded as superseded."""

    runs: Mapping[str, str] = field(default_factory=dict)
    superseded: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Policy:
    """``configs/reconcile.yaml`` ``freshness``: F, and how long the scheduler's own event path gets first."""

    bound_seconds: float = 120
    act_after_seconds: float = 30


@dataclass(frozen=True)
class Action:
    """What the reconcile did for one snapshot: ``triggered`` a training run, or recorded it ``superseded``."""

    dataset: str
    kind: str
    version: str
    reason: str
    supersedes: tuple[str, ...] = ()
    by: str = ""  # for ``superseded``: the trained version (and its run) that covers it


@dataclass(frozen=True)
class DatasetState:
    """One row of ``retrain status`` and of the reconcile's log."""

    dataset: str
    newest: Committed | None
    newest_trained: Committed | None
    lag_seconds: float  # 0 when the newest snapshot is covered, else how long it has waited since its commit
    note: str = ""

    def row(self, bound_seconds: float) -> dict:
        late = self.lag_seconds > bound_seconds
        return {
            "dataset": self.dataset,
            "newest": self.newest.version if self.newest else "-",
            "newest_data": self.newest.label if self.newest else "",
            "newest_trained": self.newest_trained.version if self.newest_trained else "-",
            "lag_s": round(self.lag_seconds),
            "state": ("LATE " if late else "") + (self.note or "fresh"),
        }


# --- the decision (pure) -------------------------------------------------------------------------------------

def decide(dataset: str, committed: Iterable[Committed], trained: Trained, ledger: Mapping[str, Mapping],
           *, now: datetime, policy: Policy,
           holders: Mapping[str, str] | None = None) -> tuple[DatasetState, list[Action]]:
    """The state of one dataset, and what to do about it.

    Rejected snapshots (failed their quality gate) are left out. When the newest remaining snapshot is neither
    trained nor recorded as superseded, has waited ``act_after_seconds`` (the event path's turn), and no queued
    or running run holds it (``holders``: version -> the active run that claimed it, or that the reconcile
    triggered for it), ask for one training run of it, listing every other uncovered snapshot as superseded by
    it. Runs of the training DAG that hold other snapshots are not waited for. A snapshot whose triggered run
    ended without training it is asked for again, up to ``MAX_TRIGGERS`` runs. Snapshots older than a snapshot
    that was trained already (landed late, or its event made no run) are recorded as superseded by that one,
    with no training.
    """
    holders = holders or {}
    snapshots = sorted((c for c in committed if (ledger.get(c.version) or {}).get("action") != REJECTED),
                       key=lambda c: c.order)
    rejected = [v for v, e in ledger.items() if e.get("action") == REJECTED]

    def covered(c: Committed) -> bool:
        entry = ledger.get(c.version) or {}
        return c.version in trained.runs or c.version in trained.superseded or entry.get("action") == SUPERSEDED

    trained_ones = [c for c in snapshots if c.version in trained.runs]
    newest_trained = trained_ones[-1] if trained_ones else None
    if not snapshots:
        note = f"{len(rejected)} snapshot(s) rejected by the quality gate" if rejected else "no snapshot"
        return DatasetState(dataset, None, newest_trained, 0.0, note), []
    newest = snapshots[-1]
    age = (now - newest.committed_at).total_seconds()
    actions: list[Action] = []

    if newest_trained is not None:  # older than a trained snapshot (landed late, or its event made no run)
        by = f"{newest_trained.version} (MLflow run {trained.runs[newest_trained.version]})"
        for c in snapshots:
            if c.order < newest_trained.order and not covered(c) and \
                    (now - c.committed_at).total_seconds() >= policy.act_after_seconds:
                actions.append(Action(dataset, SUPERSEDED, c.version, f"is older in data time than the trained "
                                      f"{newest_trained.version} and no run recorded it", by=by))

    if covered(newest):
        return DatasetState(dataset, newest, newest_trained, 0.0, "fresh"), actions
    if newest.version in holders:
        note = f"being trained by {holders[newest.version]}"
        return DatasetState(dataset, newest, newest_trained, age, note), actions
    entry = ledger.get(newest.version) or {}
    attempts = int(entry.get("attempts") or 1) if entry.get("action") == TRIGGERED else 0
    if attempts >= MAX_TRIGGERS:
        note = f"{attempts} triggered runs ended without training it (last {entry.get('run_id')}); see their logs"
        return DatasetState(dataset, newest, newest_trained, age, note), actions
    if age < policy.act_after_seconds:
        return DatasetState(dataset, newest, newest_trained, age, "waiting for its event's run"), actions
    superseded = tuple(c.version for c in snapshots[:-1] if not covered(c)
                       and c.version not in {a.version for a in actions})
    reason = (f"committed {age:.0f} s ago, untrained (newest trained: "
              f"{newest_trained.version if newest_trained else 'none'})")
    if attempts:
        reason += f"; triggered run {entry.get('run_id')} ended without training it"
    actions.append(Action(dataset, TRIGGERED, newest.version, reason, supersedes=superseded))
    return DatasetState(dataset, newest, newest_trained, age, "untrained"), actions


def run_id_for(dataset: str, version: str, attempt: int = 1) -> str:
    """The run id of the training run the reconcile triggers for a snapshot (Airflow refuses a second one with
    the same id); ``attempt`` > 1 when an earlier triggered run ended without training it."""
    return f"{RUN_ID_PREFIX}__{dataset}__{version}" + (f"__{attempt}" if attempt > 1 else "")


def is_reconcile_run(run_id: str) -> bool:
    """Whether an Airflow run id is one the reconcile triggered."""
    return str(run_id).startswith(f"{RUN_ID_PREFIX}__")


# --- the ledger and the snapshot index (IO through retrain.storage) ----------------------------------------

def _folder(dataset: str) -> str:
    from retrain.settings import get_settings

    return get_settings().work("freshness", dataset)


def _entry_location(dataset: str, version: str) -> str:
    from retrain import storage

    return storage.join(_folder(dataset), f"{version}.json")


def ledger(dataset: str) -> dict[str, dict]:
    """Every ledger entry of a dataset: version -> entry."""
    from retrain import storage

    folder = _folder(dataset)
    entries = {}
    for name in storage.listdir(folder) if storage.exists(folder) else []:
        if name.endswith(".json") and name != INDEX:
            entries[name[:-5]] = json.loads(storage.read_text(storage.join(folder, name)))
    return entries


def record(dataset: str, version: str, action: str, **details: Any) -> dict:
    """Write the ledger entry of one snapshot version (one atomic write; a later action replaces it)."""
    from retrain import storage

    entry = {"dataset": dataset, "version": version, "action": action,
             "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **details}
    storage.write_text(_entry_location(dataset, version), json.dumps(entry, sort_keys=True, default=str))
    return entry


def record_rejected(dataset: str, version: str, reason: str) -> None:
    """A snapshot failed its quality gate: the reconcile never asks for it (best effort, never raises)."""
    try:
        record(dataset, version, REJECTED, reason=reason[:500])
    except Exception as exc:  # the run fails for its data anyway; a missing entry costs one futile retry
        log.warning("freshness: could not record %s snapshot %s as rejected: %s", dataset, version, exc)


def _claim_location(dataset: str, version: str) -> str:
    from retrain import storage

    return storage.join(_folder(dataset), CLAIMS, f"{version}.json")


def read_claim(dataset: str, version: str) -> dict | None:
    """The claim on a snapshot version (the run that last resolved it to train), or None."""
    from retrain import storage

    try:
        return json.loads(storage.read_text(_claim_location(dataset, version)))
    except FileNotFoundError:
        return None


def _held_by(claim: Mapping[str, Any]) -> str:
    return f"{claim.get('dag_id')} run {claim.get('run_id')}"


def claim(dataset: str, version: str, *, dag_id: str, run_id: str, active: RunActive,
          newer: Iterable[str] = (), trained_runs: Callable[[], Mapping[str, str]] | None = None,
          force: bool = False) -> tuple[bool, str]:
    """Claim a snapshot version for the training run ``dag_id``/``run_id``, which resolved it; returns whether
    the run may train it and why.

    Refused when another queued or running run claimed it, or claimed one of the ``newer`` versions (later in
    data time: this one will be recorded as superseded), or when a finished run claimed it and trained it
    (``trained_runs()``: version -> MLflow run, read only then). A claim whose run ended without training it
    is taken over. ``force`` (a manual run: a person asked for it) always claims. One lock per dataset makes
    check-and-write atomic for every run on every host; a retried task finds its own claim and goes on.
    """
    from retrain import locks, storage

    mine = (dag_id, run_id)
    with locks.named_lock(f"freshness.{dataset}", timeout=60):
        taken_over = ""
        if not force:
            for other in newer:
                held = read_claim(dataset, other)
                if held and (held.get("dag_id"), held.get("run_id")) != mine and active(held["dag_id"], held["run_id"]):
                    return False, (f"{dataset} snapshot {version} is superseded: the newer snapshot {other} is "
                                   f"being trained by {_held_by(held)}")
            held = read_claim(dataset, version)
            if held and (held.get("dag_id"), held.get("run_id")) != mine:
                if active(held["dag_id"], held["run_id"]):
                    return False, (f"{dataset} snapshot {version} is being trained by {_held_by(held)} "
                                   f"(claimed {held.get('at')})")
                done = trained_runs() if trained_runs is not None else {}
                if version in done:
                    return False, (f"{dataset} snapshot {version} was trained already by {_held_by(held)} "
                                   f"(MLflow run {done[version]}); a snapshot trains once")
                taken_over = f"; took over the claim of {_held_by(held)}, which ended without training it"
        entry = {"dataset": dataset, "version": version, "dag_id": dag_id, "run_id": run_id,
                 "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        storage.write_text(_claim_location(dataset, version), json.dumps(entry, sort_keys=True))
    return True, f"{dataset} snapshot {version} claimed by {dag_id} run {run_id}{taken_over}"


def newer_versions(dataset: str, version: str) -> list[str]:
    """Committed versions of a dataset later in data time than ``version`` (none when it is unknown)."""
    committed = {c.version: c for c in committed_snapshots(dataset)}
    mine = committed.get(version)
    return [] if mine is None else [v for v, c in committed.items() if c.order > mine.order]


def committed_snapshots(dataset: str) -> list[Committed]:
    """Every committed snapshot of a non-partitioned dataset. Manifests are immutable, so each is read once
    and its order key kept in the ledger folder's index."""
    from retrain import snapshots, storage
    from retrain.settings import get_settings

    root = get_settings().curated(dataset)
    names = [n.split("=", 1)[1] for n in (storage.listdir(root) if storage.exists(root) else [])
             if n.startswith("version=")]
    index_location = storage.join(_folder(dataset), INDEX)
    try:
        index = json.loads(storage.read_text(index_location))
    except (FileNotFoundError, ValueError):
        index = {}
    added = False
    for version in names:
        if version not in index:
            snap = snapshots.load(dataset, version)
            if snap is None:  # being committed right now
                continue
            m = snap.manifest
            index[version] = {"order": list(data_order(m)), "created_at": m.get("created_at"), "label": data_label(m)}
            added = True
    if added:
        storage.write_text(index_location, json.dumps(index, sort_keys=True))
    return [Committed(dataset=dataset, version=v, order=tuple(index[v]["order"]),
                      committed_at=_parse_time(index[v]["created_at"]), label=index[v]["label"])
            for v in names if v in index]


def trained(workload: str, dataset: str, *, limit: int = 1000) -> Trained:
    """The finished scheduled candidate runs of a dataset (ad hoc runs may use other settings: they do not
    count): the version each trained, and the versions they recorded as superseded."""
    from retrain import tracking
    from retrain.settings import get_settings

    uri = get_settings().mlflow_tracking_uri
    if uri.startswith("sqlite:///") and not os.path.exists(uri[len("sqlite:///"):]):
        return Trained()  # nothing was ever tracked (and opening it would create the store)
    client = tracking.client()
    experiment = client.get_experiment_by_name(tracking.experiment_name(workload, dataset))
    if experiment is None:
        return Trained()
    found = client.search_runs([experiment.experiment_id], max_results=limit,
                               filter_string="attributes.status = 'FINISHED' and tags.`retrain.role` = 'candidate'",
                               order_by=["attributes.start_time DESC"])
    runs: dict[str, str] = {}
    superseded: set[str] = set()
    for run in found:
        tags = run.data.tags
        if tags.get("retrain.trigger") == "adhoc" or not tags.get("retrain.model_uri"):
            continue
        version = tags.get("data.window_digest", "")[:16] if dataset == "ticks" else tags.get("data.version", "")
        if version:
            runs.setdefault(version, run.info.run_id)
        superseded.update(v for v in tags.get("data.superseded", "").split(",") if v)
    return Trained(runs=runs, superseded=frozenset(superseded))


def newest_tick_window() -> list[Committed]:
    """Ticks: the newest window (the K newest committed partitions, each at its current version), as one
    pseudo-snapshot whose version is the window digest's prefix, or nothing while fewer than K are committed."""
    from retrain import snapshots
    from retrain.ingest import ticks as ingest_ticks
    from retrain.workloads import timeseries

    k = timeseries.dataset_config().window_partitions
    newest = ingest_ticks.partitions()[-k:]
    if len(newest) < k:
        return []
    snaps = [snapshots.load("ticks", "", p) for p in newest]
    if any(s is None for s in snaps):
        return []
    digest = timeseries.window_digest(timeseries.window_versions(snaps))
    committed_at = max(_parse_time(s.manifest.get("created_at")) for s in snaps)
    order = (newest[-1], "", 0, committed_at.isoformat(), digest)
    return [Committed(dataset="ticks", version=digest[:16], order=order,
                      committed_at=committed_at, label=f"window {newest[0]}..{newest[-1]}",
                      conf={"partition": newest[-1]}, parts=tuple(s.version for s in snaps))]


# --- one reconcile pass ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trigger:
    """One training run to start: the DAG, a run id derived from the snapshot, its conf and a note."""

    dag_id: str
    run_id: str
    conf: Mapping[str, Any]
    note: str

    def as_kwargs(self) -> dict:
        """Keyword arguments of a ``TriggerDagRunOperator`` (mapped with ``expand_kwargs``)."""
        return {"trigger_dag_id": self.dag_id, "trigger_run_id": self.run_id, "conf": dict(self.conf),
                "note": self.note}


def policy() -> Policy:
    from retrain import config

    cfg = config.load("reconcile").freshness
    return Policy(bound_seconds=cfg.bound_seconds, act_after_seconds=cfg.act_after_seconds)


def datasets() -> list[str]:
    from retrain import config

    return list(config.load("reconcile").freshness.datasets)


def _holders(dataset: str, committed: Iterable[Committed], entries: Mapping[str, Mapping],
             active: RunActive | None) -> dict[str, str]:
    """The newest non-rejected snapshot -> the queued or running run that holds it (its claimant, or the run the
    reconcile triggered for it). ``active`` None (``retrain status``, no Task SDK): every such run counts."""
    candidates = [c for c in committed if (entries.get(c.version) or {}).get("action") != REJECTED]
    if not candidates:
        return {}
    newest = max(candidates, key=lambda c: c.order).version
    runs = []
    held = read_claim(dataset, newest)
    if held:
        runs.append((held["dag_id"], held["run_id"]))
    entry = entries.get(newest) or {}
    if entry.get("action") == TRIGGERED and entry.get("run_id"):
        runs.append((entry.get("dag_id") or "", entry["run_id"]))
    for dag_id, run_id in runs:
        if active is None or active(dag_id, run_id):
            return {newest: f"{dag_id} run {run_id}"}
    return {}


def state(dataset: str, *, now: datetime | None = None, active: RunActive | None = None,
          rules: Policy | None = None) -> tuple[DatasetState, list[Action], Mapping[str, Committed]]:
    """Read what one dataset's freshness depends on and decide (nothing is written)."""
    from retrain.assets import data_asset

    now = now or datetime.now(timezone.utc)
    workload = data_asset(dataset).workload
    committed = newest_tick_window() if dataset == "ticks" else committed_snapshots(dataset)
    entries = ledger(dataset)
    if dataset == "ticks" and committed:  # a window holding a rejected partition version is rejected
        window_rejected = any((entries.get(v) or {}).get("action") == REJECTED for v in committed[0].parts)
        if window_rejected and committed[0].version not in entries:
            entries = entries | {committed[0].version: {"action": REJECTED}}
    # run states before MLflow: a run that finished after this look has its candidate run in MLflow already
    holders = _holders(dataset, committed, entries, active)
    runs = trained(workload, dataset) if committed else Trained()  # nothing committed: no MLflow call
    current, actions = decide(dataset, committed, runs, entries, now=now, policy=rules or policy(), holders=holders)
    return current, actions, {c.version: c for c in committed}


CANDIDATES = "_candidates"  # ledger folder of the candidate runs the reconcile asked a promotion for


def unjudged_candidates(*, now: datetime | None = None, older_than_s: float | None = None,
                        limit: int = 200) -> list[Trigger]:
    """One promotion run per candidate that no promotion judged within F of its end.

    A candidate event can be attached to no run just as a data event can (apache/airflow#56050), and the
    trained model would then never be judged. A candidate is a FINISHED run that recorded its event
    (``retrain.candidate_event``) and carries no ``promotion.decision`` (ad-hoc runs only when published).
    Judging is idempotent, so a late normal promotion of the same candidate changes nothing; the run id
    (``freshness__promote__<run id>``) makes the reconcile ask once.
    """
    from retrain import assets, storage, tracking
    from retrain.errors import CandidateError
    from retrain.events import CandidateEvent

    now = now or datetime.now(timezone.utc)
    older_than_s = policy().bound_seconds if older_than_s is None else older_than_s
    client = tracking.client()
    experiments = []
    for model, dataset in assets.MODELS.items():
        experiment = client.get_experiment_by_name(tracking.experiment_name(assets.DATA_ASSETS[dataset].workload,
                                                                            dataset))
        if experiment is not None:
            experiments.append(experiment.experiment_id)
    if not experiments:
        return []
    cutoff_ms = (now.timestamp() - older_than_s) * 1000
    runs = client.search_runs(experiments, f"attributes.status = 'FINISHED' and attributes.end_time < {int(cutoff_ms)}",
                              max_results=limit, order_by=["attributes.end_time DESC"])
    triggers = []
    for run in runs:
        tags = run.data.tags
        if "retrain.candidate_event" not in tags or tags.get("promotion.decision"):
            continue
        if tags.get("retrain.trigger") == "adhoc" and tags.get("retrain.adhoc.published") != "true":
            continue
        try:
            event = CandidateEvent.read(json.loads(tags["retrain.candidate_event"]), f"run {run.info.run_id}'s")
        except CandidateError as exc:  # never judgeable: promotion would fail at once; say why and go on
            log.warning("reconcile: %s", exc)
            continue
        model = event.model
        if model not in assets.MODELS or storage.exists(_entry_location(CANDIDATES, run.info.run_id)):
            continue  # asked once already: that promotion run decides, or fails with its reason
        dag_id = "promote_partitioned_models" if assets.DATA_ASSETS[assets.MODELS[model]].partitioned else "promote_models"
        waited = now.timestamp() - run.info.end_time / 1000
        run_id = f"freshness__promote__{run.info.run_id}"
        note = f"freshness reconcile: candidate run {run.info.run_id} of {model} unjudged {waited:.0f} s after it ended"
        record(CANDIDATES, run.info.run_id, TRIGGERED, dag_id=dag_id, run_id=run_id, model=model)
        log.warning("reconcile: %s; triggered %s run %s", note, dag_id, run_id)
        triggers.append(Trigger(dag_id, run_id, {"candidate_run_id": run.info.run_id}, note))
    return triggers


def reconcile(active: RunActive, *, now: datetime | None = None) -> list[Trigger]:
    """One pass over every configured dataset: record what it decided in the ledger, log one line per action,
    and return the training runs to trigger. ``active(dag_id, run_id)``: whether that run is queued or running."""
    from retrain.assets import data_asset

    rules = policy()
    triggers: list[Trigger] = []
    failed: list[str] = []
    for dataset in datasets():
        dag_id = data_asset(dataset).workload
        try:
            current, actions, by_version = state(dataset, now=now, active=active, rules=rules)
            entries = ledger(dataset) if any(a.kind == TRIGGERED for a in actions) else {}
        except Exception:  # one dataset's trouble (MLflow down, a bad manifest) must not stall the others
            log.exception("reconcile: %s could not be checked; the other datasets go on", dataset)
            failed.append(dataset)
            continue
        for action in actions:
            if action.kind == SUPERSEDED:
                record(dataset, action.version, SUPERSEDED, reason=action.reason, by=action.by)
                log.warning("reconcile: %s snapshot %s %s; recorded as superseded by %s",
                            dataset, action.version, action.reason, action.by)
                continue
            snapshot = by_version[action.version]
            previous = entries.get(action.version) or {}
            attempt = int(previous.get("attempts") or 1) + 1 if previous.get("action") == TRIGGERED else 1
            run_id = run_id_for(dataset, action.version, attempt)
            conf = dict(snapshot.conf) or {"dataset": dataset, "version": action.version,
                                           "supersedes": list(action.supersedes)}
            note = f"freshness reconcile: {dataset} snapshot {action.version} ({snapshot.label}) {action.reason}"
            record(dataset, action.version, TRIGGERED, dag_id=dag_id, run_id=run_id, reason=action.reason,
                   supersedes=list(action.supersedes), attempts=attempt)
            triggers.append(Trigger(dag_id, run_id, conf, note))
            log.warning("reconcile: %s snapshot %s (%s) %s; triggered %s run %s%s", dataset, action.version,
                        snapshot.label, action.reason, dag_id, run_id,
                        f" (supersedes {list(action.supersedes)})" if action.supersedes else "")
        if not actions:
            log.info("reconcile: %s %s (newest %s, newest trained %s)", dataset, current.note,
                     current.newest.version if current.newest else "-",
                     current.newest_trained.version if current.newest_trained else "-")
    try:
        triggers += unjudged_candidates(now=now)
    except Exception:  # MLflow down: the datasets above were still checked
        log.exception("reconcile: unjudged candidates could not be checked")
        failed.append("candidates")
    if failed and not triggers:
        raise RuntimeError(f"freshness reconcile could not check {failed} (see the log above); retried")
    return triggers


def report(*, now: datetime | None = None, active: RunActive | None = None) -> list[dict]:
    """``retrain status``: per dataset, the newest snapshot, the newest trained one and the lag (reads the
    curated manifests, the ledger and MLflow; needs no scheduler). ``active``: run states, when the caller can
    ask Airflow (without it, every claim counts as held)."""
    rules = policy()
    rows = []
    for dataset in datasets():
        try:
            current, _, _ = state(dataset, now=now, active=active, rules=rules)
        except Exception as exc:  # MLflow down: say so in the row, keep the others
            rows.append({"dataset": dataset, "newest": "?", "newest_data": "", "newest_trained": "?", "lag_s": "?",
                         "state": f"unknown ({type(exc).__name__}: {str(exc)[:80]})"})
            continue
        rows.append(current.row(rules.bound_seconds))
    return rows
