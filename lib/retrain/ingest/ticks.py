"""Ingest tick partitions: ``landing/ticks/date=YYYY-MM-DD/*`` becomes ``curated/ticks/date=YYYY-MM-DD/version=<v>/``.

Each partition is owned by one ``ingest_ticks`` run (its partition key). The landed files (CSV or parquet,
see :mod:`retrain.data.ticks`) are read and normalised by :mod:`retrain.data.tick_reader` into sorted parquet
with a manifest and committed as a new, immutable version of the partition, which then becomes its current
one (see :mod:`retrain.snapshots`). The version is a digest of the raw files' content, so re-ingesting
unchanged data (a backfill over partitions already built) emits no event; a correction commits a new version
and its event names that version, while the earlier build stays readable for the runs that recorded it.

Nothing landed is deleted (design contract 10): the raw files of every arrival are archived under
``archive/ticks/date=…/<raw digest>/`` (one folder per distinct set of file names and contents, with a
``.archive.json`` saying which curated version they built and when), and :func:`reland` puts the current
version's raw files back for a rebuild. Old curated versions and their raw files go only through
:func:`gc`, with an explicit retention, and never the current version.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from retrain import config, snapshots, storage
from retrain.data import tick_reader, ticks
from retrain.errors import DataFormatError
from retrain.ingest import landing
from retrain.ingest.power import IngestResult
from retrain.settings import get_settings

DATASET = "ticks"
ARCHIVE_RECORD = ".archive.json"  # a dotfile: never a data file, never re-landed
log = logging.getLogger(__name__)


def folder(partition: str) -> str:
    ticks.partition_day(partition)  # validates the key
    return f"date={partition}"


def archive_folder(partition: str) -> str:
    """Every archived raw version of a partition lives under this folder, one subfolder each."""
    return get_settings().archive(DATASET, folder(partition))


def partitions() -> list[str]:
    """Committed partitions (those with a current version), oldest first."""
    root = get_settings().curated(DATASET)
    keys = [n.split("=", 1)[1] for n in storage.listdir(root) if n.startswith("date=")]
    return sorted(k for k in keys if snapshots.current_version(DATASET, k) is not None)


def ingest(dataset: str, name: str, run_id: str) -> IngestResult:
    """The catalog's ingest step (``(dataset, landed name, run id)``): :func:`ingest_partition`; the name is a
    landed folder ``date=YYYY-MM-DD`` or the partition itself."""
    return ingest_partition(name.removeprefix("date="), run_id)


def ingest_partition(partition: str, run_id: str) -> IngestResult:
    """Normalise and commit one partition from its landed files as a new version; quarantine them if they
    are malformed. Landed content that is already the current version is a duplicate (no event); content
    built before (a correction undone) becomes current again and emits an event naming that version."""
    name = folder(partition)
    # the feed's settings first: a broken configs/feeds.yaml fails the run before any file moves
    zone = config.feed(DATASET).source_timezone  # a vendor clock without offsets, converted to UTC at parse
    landed = storage.join(landing.landing_folder(DATASET), name)
    claimed = storage.join(get_settings().ingest_work(run_id, DATASET), name)
    # locally a claim is one rename; on an object store a partition still in landing means the copy-then-delete
    # claim did not finish, so it is repeated
    if storage.exists(landed) and (not storage.is_local(landed) or not storage.exists(claimed)):
        storage.move(landed, claimed)
    if not storage.exists(claimed):
        existing = snapshots.load(DATASET, "", partition)
        if existing is not None and existing.manifest.get("produced_by", {}).get("run_id") == run_id:
            return IngestResult("resumed", existing)  # a retry after this run committed and archived
        raise DataFormatError(f"landing/ticks/{name}", "a partition's files must have landed", "no files")
    files = [(n, _raw(storage.join(claimed, n))) for n in landing.data_files(claimed)]
    # the raw files' digest first: an unchanged partition (a backfill over built ones) is not parsed at all
    source = [{"name": f"{name}/{n}", **_digest(raw)} for n, raw in files]
    # the zone a clock without offsets is read in is part of what a version is built from: correcting it in
    # configs/feeds.yaml rebuilds the same raw files (no zone: the digest of the files alone, as before)
    built_from = "".join(sorted(s["sha256"] for s in source)) + (f"\0source_timezone={zone}" if zone else "")
    source_digest = hashlib.sha256(built_from.encode()).hexdigest()[:16]
    current = snapshots.load(DATASET, "", partition)
    if current is not None and current.version == source_digest:
        _archive(claimed, partition, source, source_digest, run_id)
        produced = current.manifest.get("produced_by", {}).get("run_id") == run_id
        return IngestResult("resumed" if produced else "duplicate", current)
    built = snapshots.load(DATASET, source_digest, partition)
    if built is not None:
        # this content was a version of the partition before (a correction undone, or this run's commit
        # whose pointer move crashed): that immutable build becomes current again, nothing is rebuilt
        snapshots.set_current(built)
        _archive(claimed, partition, source, source_digest, run_id)
        log.info("partition %s: version %s is current again", partition, built.version)
        produced = built.manifest.get("produced_by", {}).get("run_id") == run_id
        return IngestResult("resumed" if produced else "ingested", built)
    with landing.quarantined_on_format_error(DATASET, claimed, run_id):
        table = tick_reader.normalize_partition(files, partition, source_timezone=zone)
    del files

    written: list[dict] = []

    def write(target: str) -> list[dict]:
        written.extend(ticks.write_partition(table, target))
        return written

    # a new immutable version of the partition, current once committed; the one it replaces stays readable
    snapshot = snapshots.commit(
        DATASET, source_digest, write, rows=table.num_rows, partition=partition, source_files=source,
        produced_by={"run_id": run_id}, schema_version=ticks.SCHEMA_VERSION,
        extra={"source_digest": source_digest, "symbols": ticks.symbols(table),
               "replaces": current.version if current else None},
    )
    _archive(claimed, partition, source, source_digest, run_id)
    log.info("partition %s -> %d ticks, version %s (%s)", partition, snapshot.rows, snapshot.version,
             f"replaces {current.version}" if current else "new")
    return IngestResult("ingested", snapshot)


def _raw(location: str) -> bytes | str:
    """A landed file as the reader takes it: a local file by its path (streamed, never held whole), an object
    by its bytes (one download serves both the digest and the reader)."""
    return location if storage.is_local(location) else storage.read_bytes(location)


def _digest(raw: bytes | str) -> dict:
    if isinstance(raw, str):
        return {"sha256": storage.sha256(raw), "bytes": storage.size(raw)}
    return {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}


def raw_digest(source: list[dict]) -> str:
    """The archive folder of an arrival: a digest over its files' names and contents, so two arrivals share
    a folder only when they hold the same files byte for byte under the same names."""
    digest = hashlib.sha256()
    for entry in sorted(source, key=lambda e: e["name"]):
        digest.update(f"{storage.name(entry['name'])}\0{entry['sha256']}\n".encode())
    return digest.hexdigest()[:16]


def _archive(claimed: str, partition: str, source: list[dict], version: str, run_id: str) -> str:
    """Move an arrival's raw files under their own archive version; nothing archived before is touched.

    The record is written first, so no archived file is ever without one; a crash part-way leaves the rest
    still claimed (the retry moves them), and :func:`reland` only takes a version whose files are all there. An arrival identical to an archived one (a backfill re-lands archived files)
    adds nothing: its files already lie there byte for byte under the same names, so the claimed copies go.
    """
    target = storage.join(archive_folder(partition), raw_digest(source))
    record = storage.join(target, ARCHIVE_RECORD)
    if not storage.exists(record):
        storage.write_text(record, json.dumps({
            "partition": partition, "version": version, "files": [storage.name(s["name"]) for s in source],
            "archived_at": datetime.now(timezone.utc).isoformat(timespec="microseconds"), "run_id": run_id,
        }, indent=2))
    data = set(landing.data_files(claimed))
    for child in storage.listdir(claimed):
        destination = storage.join(target, child)
        if child in data and storage.exists(destination):
            if storage.sha256(destination) != storage.sha256(storage.join(claimed, child)):
                raise DataFormatError(f"{destination}", "an archive version holds exactly the files of its digest",
                                      "archived file differs from the arrival's file of the same name")
            storage.remove(storage.join(claimed, child))  # an identical copy is archived: nothing is lost
        else:
            storage.move(storage.join(claimed, child), destination)
    storage.remove(claimed, recursive=True)  # empty now (locally a folder; on an object store nothing is left)
    return target


@dataclass(frozen=True)
class ArchivedVersion:
    """One archived arrival of a partition: where its raw files are and which curated version they built."""

    location: str
    version: str
    archived_at: str
    files: list[str]


def archived_versions(partition: str) -> list[ArchivedVersion]:
    """A partition's archived raw versions, oldest first. Folders without a record (an older layout) are
    left out here, so neither :func:`reland` nor :func:`gc` ever touches them."""
    found = []
    root = archive_folder(partition)
    for name in storage.listdir(root):
        record = storage.join(root, name, ARCHIVE_RECORD)
        if storage.exists(record):
            meta = json.loads(storage.read_text(record))
            found.append(ArchivedVersion(storage.join(root, name), meta["version"], meta["archived_at"], meta["files"]))
    return sorted(found, key=lambda a: a.archived_at)


def reland(partition: str) -> bool:
    """Put a partition's archived raw files back into the landing zone (for a rebuild). False if none.

    The raw version re-landed is the newest complete archived one that built the partition's current version
    (else the newest complete one). A partition already in the landing zone is left alone (True): a genuine
    arrival is never overwritten. The archive keeps its copy, so the re-landed files are copies only.
    """
    target = storage.join(landing.landing_folder(DATASET), folder(partition))
    if storage.exists(target):
        return True
    archived = archived_versions(partition)
    if not archived:
        return False
    complete = [a for a in archived if all(storage.exists(storage.join(a.location, f)) for f in a.files)]
    if not complete:
        return False
    current = snapshots.current_version(DATASET, partition)
    chosen = ([a for a in complete if a.version == current] or complete)[-1]
    landing.land(DATASET, chosen.location, folder(partition))
    return True


def gc(keep: int, *, dry_run: bool = False) -> list[str]:
    """Remove all but the ``keep`` newest curated versions of every tick partition, and the archived raw
    versions that built only removed versions. Returns what it removed (or would remove, with ``dry_run``).

    The current version of a partition is never removed, even when ``keep`` newer ones exist (a correction
    undone made an older version current again), and neither are the raw files that built any kept version,
    nor the ``keep`` newest archived raw versions. This is the only code that deletes curated or archived
    tick data (design contract 10): ingest never removes a version.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the current version always stays), got {keep}")
    removed: list[str] = []
    root = get_settings().curated(DATASET)
    for key in sorted(n.split("=", 1)[1] for n in storage.listdir(root) if n.startswith("date=")):
        versions = snapshots.partition_versions(DATASET, key)
        current = snapshots.current_version(DATASET, key)
        kept = {s.version for s in versions[-keep:]} | {current}
        for snapshot in versions:
            if snapshot.version not in kept:
                removed.append(snapshot.location)
                if not dry_run:
                    storage.remove(snapshot.location, recursive=True)
        archived = archived_versions(key)
        newest_raw = {a.location for a in archived[-keep:]}
        for raw in archived:
            if raw.version not in kept and raw.location not in newest_raw:
                removed.append(raw.location)
                if not dry_run:
                    storage.remove(raw.location, recursive=True)
    return removed
