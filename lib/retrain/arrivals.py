"""Event-driven arrivals (the sqs profile): S3 notifications on one SQS queue → one landing event per dataset.

The bucket sends ``s3:ObjectCreated:*`` notifications for keys under ``<data root>/landing/`` to one SQS queue;
one ``AssetWatcher`` receives them (up to 10 messages per asset event) and the ``route_arrivals`` DAG turns
each batch into at most one ``landing.<dataset>`` event per dataset whose extra names exactly the object keys.
One poller serves every dataset: messages are routed by key prefix here, not by a watcher per asset.

What counts as an arrival:

* ``landing/household_power/<file>``: a file is complete when it exists (one PUT);
* ``landing/{mnist,cifar10}/<drop>/_SUCCESS``: a drop (a folder) is complete once its marker is written, last;
  the notifications of the drop's other files are ignored;
* ``landing/ticks/...`` is ignored: tick partitions land on ``ingest_ticks``' daily partition timetable.

Anything else is logged and dropped, never an event: a message that is not an S3 notification, the
``s3:TestEvent`` S3 sends when notifications are configured, other event types, other buckets, keys outside
the landing prefix. Keys arrive URL-encoded (``a+b%2Bc.txt`` is ``a b+c.txt``).

Duplicates and losses. SQS delivers at least once, so one PUT may be notified twice: the ledger
(``work/arrivals/named/``, one small object per landed object) remembers which notification (key, ETag and
S3's sequencer, else the event time) already named an object, so a repeat is dropped, and a notification for
an object already gone from landing (ingested) is dropped too. The watcher deletes messages when it receives
them, before any run has used them, so a message can be lost (a failed router run, a paused DAG): the
periodic :func:`sweep` names every landed object older than ``reconcile_min_age_minutes`` that no event named
in that time. Ingest runs take only names still in landing, so an object named twice is ingested once.

:func:`route` and the other parsers are pure; :func:`dispatch` and :func:`sweep` read and write the ledger.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote_plus

from retrain import storage
from retrain import catalog
from retrain.assets import EVENT_SCHEMA_VERSION
from retrain.errors import ConfigError
from retrain.ingest.landing import DROP_COMPLETE, landing_folder, pending
from retrain.settings import get_settings

log = logging.getLogger(__name__)

# how an arrival of each routed dataset looks: one object ("file") or a folder completed by _SUCCESS ("drop"),
# and why the others are not routed (the catalog's entries; LANDING_ASSETS are the routed ones)
ARRIVES_AS: Mapping[str, str] = catalog.View(lambda: {d.name: d.arrives_as for d in catalog.DATASETS.values()
                                                  if d.arrives_as})
NOT_ROUTED: Mapping[str, str] = catalog.View(lambda: {d.name: d.not_routed for d in catalog.DATASETS.values()
                                                  if not d.arrives_as})


class NotANotification(ValueError):
    """A message body that is not an S3 event notification."""


@dataclass(frozen=True)
class Landing:
    """Where the landing zone is on the object store: the bucket and the key prefix of ``landing/``."""

    bucket: str
    prefix: str  # ends with "/"

    @classmethod
    def from_settings(cls) -> Landing:
        root = get_settings().landing()
        if not root.startswith("s3://"):
            raise ConfigError(f"event-driven arrivals need an s3:// data root (observed landing {root!r})")
        bucket, _, key = root[len("s3://"):].partition("/")
        return cls(bucket=bucket, prefix=f"{key.strip('/')}/" if key.strip("/") else "")


@dataclass(frozen=True)
class Arrival:
    """One landed object (a file, or a drop's ``_SUCCESS`` marker) that an ingest run should take."""

    dataset: str
    name: str  # under landing/<dataset>/: the file, or the drop folder
    key: str  # the object key, decoded
    etag: str
    version: str  # S3's sequencer, else the event time: a repeated PUT differs, a repeated notification does not

    @property
    def identity(self) -> str:
        return f"{self.key}\0{self.etag}\0{self.version}"


@dataclass(frozen=True)
class Dropped:
    reason: str
    detail: str


@dataclass
class Routing:
    """What one batch of messages amounts to."""

    arrivals: list[Arrival] = field(default_factory=list)  # unique, in message order
    duplicates: list[Arrival] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)  # not arrivals: logged as warnings
    ignored: list[Dropped] = field(default_factory=list)  # expected and harmless (parts of a drop, ticks)

    def by_dataset(self) -> dict[str, list[Arrival]]:
        grouped: dict[str, list[Arrival]] = {}
        for arrival in self.arrivals:
            grouped.setdefault(arrival.dataset, []).append(arrival)
        return grouped


def message_bodies(extras: Iterable[Mapping[str, Any]]) -> list[str]:
    """The SQS message bodies the watcher's asset events carry (``extra.payload.message_batch[*].Body``)."""
    bodies = []
    for extra in extras:
        batch = ((extra or {}).get("payload") or {}).get("message_batch") or []
        bodies += [m["Body"] if isinstance(m, Mapping) and "Body" in m else json.dumps(m) for m in batch]
    return bodies


def parse_records(body: str | bytes) -> list[dict]:
    """The ``Records`` of an S3 event notification (also when wrapped by SNS); NotANotification otherwise.
    An ``s3:TestEvent`` has no records."""
    try:
        message = json.loads(body)
    except (TypeError, ValueError):
        raise NotANotification(f"not JSON: {str(body)[:80]!r}") from None
    if isinstance(message, dict) and message.get("Type") == "Notification" and isinstance(message.get("Message"), str):
        return parse_records(message["Message"])  # S3 -> SNS -> SQS
    if not isinstance(message, dict):
        raise NotANotification(f"JSON but not an object: {str(body)[:80]!r}")
    if message.get("Event") == "s3:TestEvent":
        return []
    records = message.get("Records")
    if not isinstance(records, list) or not records:
        raise NotANotification(f"no Records: {str(body)[:80]!r}")
    if not all(isinstance(r, dict) and r.get("eventSource") == "aws:s3" and isinstance(r.get("s3"), dict)
               for r in records):
        raise NotANotification(f"records that are not aws:s3 events: {str(body)[:80]!r}")
    return records


def classify(record: Mapping[str, Any], landing: Landing) -> Arrival | tuple[str, Dropped]:
    """One notification record as an Arrival, or ``("dropped"|"ignored", Dropped)``."""
    s3 = record["s3"]
    bucket = (s3.get("bucket") or {}).get("name", "")
    obj = s3.get("object") or {}
    key = unquote_plus(obj.get("key", ""))
    where = f"s3://{bucket}/{key}"
    event = str(record.get("eventName", ""))
    if not event.startswith("ObjectCreated:"):
        return "dropped", Dropped(f"not an object-created event ({event or 'no eventName'})", where)
    if bucket != landing.bucket:
        return "dropped", Dropped(f"another bucket than the data root's ({landing.bucket})", where)
    if not key.startswith(landing.prefix):
        return "dropped", Dropped(f"outside the landing prefix {landing.prefix!r}", where)
    dataset, _, rest = key[len(landing.prefix):].partition("/")
    if dataset in NOT_ROUTED:
        return "ignored", Dropped(NOT_ROUTED[dataset], where)
    if dataset not in ARRIVES_AS:
        return "dropped", Dropped(f"no routed dataset lands under landing/{dataset}/ (known: {sorted(ARRIVES_AS)})", where)
    parts = PurePosixPath(rest).parts if rest else ()
    if not parts or ".." in parts or rest.startswith("/") or "\\" in rest:
        return "dropped", Dropped("not a file inside a dataset's landing folder", where)
    if any(p.startswith(".") for p in parts):
        return "ignored", Dropped("upload in progress (hidden name)", where)
    version = str(obj.get("sequencer") or record.get("eventTime") or "")
    etag = str(obj.get("eTag") or obj.get("etag") or "").strip('"')
    if ARRIVES_AS[dataset] == "file":
        if len(parts) != 1:
            return "dropped", Dropped(f"{dataset} files sit directly under landing/{dataset}/", where)
        return Arrival(dataset, parts[0], key, etag, version)
    if len(parts) == 2 and parts[1] == DROP_COMPLETE:
        return Arrival(dataset, parts[0], key, etag, version)
    if len(parts) == 2:
        return "ignored", Dropped(f"part of a {dataset} drop (the drop is routed by its {DROP_COMPLETE})", where)
    return "dropped", Dropped(f"{dataset} drops are folders directly under landing/{dataset}/", where)


def route(bodies: Iterable[str | bytes], landing: Landing) -> Routing:
    """Parse a batch of message bodies into unique arrivals; everything else is dropped or ignored."""
    routing, seen = Routing(), set()
    for body in bodies:
        try:
            records = parse_records(body)
        except NotANotification as exc:
            routing.dropped.append(Dropped("not an S3 notification", str(exc)))
            continue
        if not records:
            routing.ignored.append(Dropped("s3:TestEvent", str(body)[:120]))
        for record in records:
            result = classify(record, landing)
            if isinstance(result, Arrival):
                if result.identity in seen:
                    routing.duplicates.append(result)
                else:
                    seen.add(result.identity)
                    routing.arrivals.append(result)
            else:
                kind, dropped = result
                (routing.dropped if kind == "dropped" else routing.ignored).append(dropped)
    return routing


def landing_event(dataset: str, arrivals: list[Arrival], landing: Landing, source: str) -> dict:
    """The ``landing.<dataset>`` event extra: exactly the object keys (and their names under landing/)."""
    return {"schema": EVENT_SCHEMA_VERSION, "dataset": dataset, "source": source, "bucket": landing.bucket,
            "keys": [a.key for a in arrivals], "names": [a.name for a in arrivals]}


def names_from_events(dataset: str, extras: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names (under landing/<dataset>/) that landing events of ``dataset`` name, first mention first."""
    names: list[str] = []
    for extra in extras:
        if extra.get("dataset") != dataset:
            raise ConfigError(f"a landing.{dataset} event must name {dataset} objects (observed {extra.get('dataset')!r})")
        names += [n for n in extra.get("names", []) if n not in names]
    return names


def select(dataset: str, extras: Iterable[Mapping[str, Any]]) -> list[str]:
    """What an event-driven ingest run takes: the names its events name that are still in landing."""
    named = names_from_events(dataset, extras)
    waiting = set(pending(dataset))
    gone = [n for n in named if n not in waiting]
    if gone:
        log.info("%s: %d named object(s) already left landing (ingested by an earlier run): %s", dataset, len(gone), gone)
    return [n for n in named if n in waiting]


# --- the ledger (IO) ---------------------------------------------------------------------------------------

def _ledger_entry(dataset: str, key: str, etag: str) -> str:
    digest = hashlib.sha256(f"{key}\0{etag}".encode()).hexdigest()[:32]
    return get_settings().work("arrivals", "named", dataset, f"{digest}.json")


def _read_ledger(location: str) -> dict | None:
    try:
        return json.loads(storage.read_text(location))
    except FileNotFoundError:
        return None


def _record(location: str, entry: dict | None, arrival: Arrival, run_id: str, now: datetime) -> None:
    entry = entry or {"key": arrival.key, "etag": arrival.etag, "named": {}}
    entry["named"][arrival.identity] = run_id
    entry["named_at"] = now.isoformat(timespec="seconds")
    storage.write_text(location, json.dumps(entry, sort_keys=True))


@dataclass
class Dispatch:
    """The landing events one router run emits, and what it left out."""

    events: dict[str, dict] = field(default_factory=dict)
    routing: Routing = field(default_factory=Routing)
    repeats: list[Arrival] = field(default_factory=list)  # named by an earlier run already
    gone: list[Arrival] = field(default_factory=list)  # no longer in landing

    def merge(self, other: Dispatch) -> None:
        """Add another dispatch of the same run (the sweep after the messages): one event per dataset still."""
        for dataset, event in other.events.items():
            if dataset not in self.events:
                self.events[dataset] = event
                continue
            mine = self.events[dataset]
            for key, name in zip(event["keys"], event["names"]):
                if name not in mine["names"]:
                    mine["keys"].append(key)
                    mine["names"].append(name)
            mine["source"] = f"{mine['source']}+{event['source']}"
        self.routing.duplicates += other.routing.duplicates
        self.routing.dropped += other.routing.dropped
        self.routing.ignored += other.routing.ignored
        self.repeats += other.repeats
        self.gone += other.gone

    def summary(self) -> dict:
        return {"events": {ds: e["names"] for ds, e in self.events.items()},
                "duplicates": len(self.routing.duplicates) + len(self.repeats), "gone": len(self.gone),
                "dropped": len(self.routing.dropped), "ignored": len(self.routing.ignored)}


def dispatch(bodies: Iterable[str | bytes], run_id: str, *, now: datetime | None = None) -> Dispatch:
    """Route a batch of message bodies and record what is named; the events to emit, one per dataset."""
    landing = Landing.from_settings()
    now = now or datetime.now(timezone.utc)
    result = Dispatch(routing=route(bodies, landing))
    for dropped in result.routing.dropped:
        log.warning("dropped message: %s (%s)", dropped.reason, dropped.detail)
    for ignored in result.routing.ignored:
        log.info("ignored: %s (%s)", ignored.reason, ignored.detail)
    for arrival in result.routing.duplicates:
        log.info("duplicate notification in this batch: s3://%s/%s", landing.bucket, arrival.key)
    for dataset, arrivals in result.routing.by_dataset().items():
        fresh = []
        for arrival in arrivals:
            location = _ledger_entry(dataset, arrival.key, arrival.etag)
            entry = _read_ledger(location)
            if entry and entry["named"].get(arrival.identity, run_id) != run_id:  # a retry of this run re-emits
                result.repeats.append(arrival)
                log.info("duplicate notification (named by run %s): s3://%s/%s", entry["named"][arrival.identity],
                         landing.bucket, arrival.key)
            elif not storage.exists(f"s3://{landing.bucket}/{arrival.key}"):
                result.gone.append(arrival)
                log.info("already gone from landing (ingested or deleted): s3://%s/%s", landing.bucket, arrival.key)
            else:
                _record(location, entry, arrival, run_id, now)
                fresh.append(arrival)
        if fresh:
            result.events[dataset] = landing_event(dataset, fresh, landing, "sqs")
    return result


def sweep(run_id: str, min_age: timedelta, *, now: datetime | None = None) -> Dispatch:
    """Name every object that has waited in landing at least ``min_age`` without an event naming it in that time
    (a lost or unusable message); the events to emit, one per dataset."""
    landing = Landing.from_settings()
    now = now or datetime.now(timezone.utc)
    result = Dispatch()
    for dataset, unit in ARRIVES_AS.items():
        folder = landing_folder(dataset)
        waiting = set(pending(dataset))
        found = []
        for info in storage.list_files(folder):
            parts = info.location[len(folder) + 1:].split("/")
            complete = parts == [parts[0]] if unit == "file" else parts[1:] == [DROP_COMPLETE]
            if complete and parts[0] in waiting and now - info.modified >= min_age:
                key = info.location[len(f"s3://{landing.bucket}/"):]
                found.append(Arrival(dataset, parts[0], key, info.etag or "", f"listed@{info.modified.isoformat()}"))
        fresh = []
        for arrival in found:
            location = _ledger_entry(dataset, arrival.key, arrival.etag)
            entry = _read_ledger(location)
            if entry and now - datetime.fromisoformat(entry["named_at"]) < min_age:
                continue  # named recently: its ingest run may still be queued
            _record(location, entry, arrival, run_id, now)
            fresh.append(arrival)
        if fresh:
            log.warning("reconcile: %d %s object(s) waited over %s with no event: %s", len(fresh), dataset, min_age,
                        [a.name for a in fresh])
            result.events[dataset] = landing_event(dataset, fresh, landing, "reconcile")
    return result
