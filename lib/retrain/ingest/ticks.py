"""Ingest tick partitions: ``landing/ticks/date=YYYY-MM-DD/*`` becomes ``curated/ticks/date=YYYY-MM-DD/``.

Each partition is owned by one ``ingest_ticks`` run (its partition key). The landed files (CSV or parquet,
see :mod:`retrain.data.ticks`) are normalised into sorted parquet with a manifest and committed in one step,
replacing an earlier build of the same partition. The snapshot's version is a digest of the normalised
content, so re-ingesting unchanged data (a backfill over partitions already built) emits no event; the
raw files are kept under ``archive/ticks/date=…/`` and :func:`reland` puts them back for a rebuild.
"""

from __future__ import annotations

import hashlib
import logging

from retrain import snapshots, storage
from retrain.data import ticks
from retrain.errors import DataFormatError
from retrain.ingest import landing
from retrain.ingest.power import IngestResult
from retrain.settings import get_settings

DATASET = "ticks"
log = logging.getLogger(__name__)


def folder(partition: str) -> str:
    ticks.partition_day(partition)  # validates the key
    return f"date={partition}"


def archive_folder(partition: str) -> str:
    return get_settings().archive(DATASET, folder(partition))


def partitions() -> list[str]:
    """Committed partitions, oldest first."""
    root = get_settings().curated(DATASET)
    keys = [n.split("=", 1)[1] for n in storage.listdir(root) if n.startswith("date=")]
    return sorted(k for k in keys if snapshots.load(DATASET, "", k) is not None)


def ingest_partition(partition: str, run_id: str) -> IngestResult:
    """Normalise and commit one partition from its landed files; quarantine them if they are malformed."""
    name = folder(partition)
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
    source_digest = hashlib.sha256("".join(sorted(s["sha256"] for s in source)).encode()).hexdigest()[:16]
    existing = snapshots.load(DATASET, "", partition)
    if existing is not None and existing.manifest.get("source_digest") == source_digest:
        _archive(claimed, partition)
        produced = existing.manifest.get("produced_by", {}).get("run_id") == run_id
        return IngestResult("resumed" if produced else "duplicate", existing)
    try:
        table = ticks.normalize_partition(files, partition)
    except DataFormatError as exc:
        reason = landing.quarantine(DATASET, claimed, exc, run_id)
        log.error("quarantined partition %s: %s (reason: %s)", partition, exc, reason)
        raise
    del files

    written: list[dict] = []

    def write(target: str) -> list[dict]:
        written.extend(ticks.write_partition(table, target))
        return written

    # the version is the normalised content's digest: computed after writing, checked before committing
    snapshot = snapshots.commit(
        DATASET, source_digest, write, rows=table.num_rows, partition=partition, source_files=source,
        produced_by={"run_id": run_id}, schema_version=ticks.SCHEMA_VERSION,
        extra={"source_digest": source_digest, "symbols": ticks.symbols(table),
               "replaces": existing.version if existing else None},
    )
    _archive(claimed, partition)
    log.info("partition %s -> %d ticks (%s)", partition, snapshot.rows, "rebuilt" if existing else "new")
    return IngestResult("ingested", snapshot)


def _raw(location: str) -> bytes | str:
    """A landed file as the reader takes it: a local file by its path (streamed, never held whole), an object
    by its bytes (one download serves both the digest and the reader)."""
    return location if storage.is_local(location) else storage.read_bytes(location)


def _digest(raw: bytes | str) -> dict:
    if isinstance(raw, str):
        return {"sha256": storage.sha256(raw), "bytes": storage.size(raw)}
    return {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}


def _archive(claimed: str, partition: str) -> None:
    target = archive_folder(partition)
    if storage.exists(target):
        storage.remove(target, recursive=True)
    storage.move(claimed, target)


def reland(partition: str) -> bool:
    """Put a partition's archived raw files back into the landing zone (for a rebuild). False if none."""
    source = archive_folder(partition)
    target = storage.join(landing.landing_folder(DATASET), folder(partition))
    if storage.exists(target) or not storage.exists(source):
        return storage.exists(target)
    landing.land(DATASET, source, folder(partition))
    return True
