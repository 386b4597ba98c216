"""Ingest household power files: one landed file becomes one immutable snapshot and one asset event."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from retrain import snapshots, storage
from retrain.data import power
from retrain.errors import DataFormatError, LandingPathError
from retrain.ingest import landing

DATASET = "household_power"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What happened to one landed file: ``ingested`` (new snapshot), ``resumed`` (this run committed it on an
    earlier try) or ``duplicate`` (the same content was ingested before: no new version, no event)."""

    status: str
    snapshot: snapshots.Snapshot

    @property
    def emits_event(self) -> bool:
        return self.status in ("ingested", "resumed")


def version_for(data: bytes) -> str:
    """Content-addressed: the same file always yields the same version."""
    return hashlib.sha256(data).hexdigest()[:16]


def ingest_file(file_name: str, run_id: str) -> IngestResult:
    """Claim, parse and snapshot one landed power file. Bad files are quarantined and the error re-raised."""
    try:
        claimed = landing.claim(DATASET, file_name, run_id)
    except LandingPathError:
        existing = landing.committed_by_run(DATASET, file_name, run_id)
        if existing is None:
            raise
        return IngestResult("resumed", existing)
    data = storage.read_bytes(claimed)
    source_sha = hashlib.sha256(data).hexdigest()
    version = version_for(data)

    existing = snapshots.load(DATASET, version)
    if existing is not None:
        landing.archive(DATASET, claimed, version)
        # "resumed": this very file was committed by this run on an earlier try; anything else is a repeat
        same_run = existing.manifest.get("produced_by", {}).get("run_id") == run_id
        same_file = file_name in [s["name"] for s in existing.manifest.get("source_files", [])]
        status = "resumed" if same_run and same_file else "duplicate"
        log.info("%s: content already in snapshot %s (%s)", file_name, version, status)
        return IngestResult(status, existing)

    try:
        table = power.read_power_bytes(data, file_name)
    except DataFormatError as exc:
        reason = landing.quarantine(DATASET, claimed, exc, run_id)
        log.error("quarantined %s: %s (reason: %s)", file_name, exc, reason)
        raise

    timestamps = table["timestamp"]
    snapshot = snapshots.commit(
        DATASET,
        version,
        lambda folder: [snapshots.write_parquet(table, folder)],
        rows=table.num_rows,
        source_files=[{"name": file_name, "sha256": source_sha, "bytes": len(data)}],
        produced_by={"run_id": run_id},
        schema_version=power.SCHEMA_VERSION,
        extra={
            "time_range": [str(timestamps[0].as_py()), str(timestamps[-1].as_py())],
            "columns": power.COLUMNS,
        },
    )
    landing.archive(DATASET, claimed, version)
    log.info("%s -> snapshot %s (%d rows)", file_name, version, snapshot.rows)
    return IngestResult("ingested", snapshot)
