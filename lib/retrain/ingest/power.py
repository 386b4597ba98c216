"""Ingest household power files: one landed file becomes one immutable snapshot and one asset event."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from retrain import locks, snapshots, storage
from retrain.data import power
from retrain.errors import LandingPathError
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
        # the event belongs to the file that committed the snapshot; another name of the same bytes has none
        produced = existing.manifest.get("produced_by", {}).get("file")
        return IngestResult("resumed" if produced in (None, file_name) else "duplicate", existing)
    data = storage.read_bytes(claimed)
    source = {"name": file_name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    version = version_for(data)

    # One content, one snapshot, one event: the same bytes landed under two names at once are committed by
    # whichever ingest takes the version's lock first; the other finds the snapshot and only adds its name.
    with locks.named_lock(f"snapshot.{DATASET}.{version}"):
        existing = snapshots.load(DATASET, version)
        if existing is not None:
            existing = snapshots.add_source_file(existing, source)
            landing.archive(DATASET, claimed, version)
            # "resumed": this very file was committed by this run on an earlier try; anything else is a repeat
            produced = existing.manifest.get("produced_by", {})
            first = produced.get("file") or existing.manifest["source_files"][0]["name"]
            status = "resumed" if produced.get("run_id") == run_id and first == file_name else "duplicate"
            log.info("%s: content already in snapshot %s (%s)", file_name, version, status)
            return IngestResult(status, existing)

        with landing.quarantined_on_format_error(DATASET, claimed, run_id):
            table = power.read_power_bytes(data, file_name)

        timestamps = table["timestamp"]
        snapshot = snapshots.commit(
            DATASET,
            version,
            lambda folder: [snapshots.write_parquet(table, folder)],
            rows=table.num_rows,
            source_files=[source],
            produced_by={"run_id": run_id, "file": file_name},
            schema_version=power.SCHEMA_VERSION,
            extra={
                "time_range": [str(timestamps[0].as_py()), str(timestamps[-1].as_py())],
                "columns": power.COLUMNS,
            },
        )
    landing.archive(DATASET, claimed, version)
    log.info("%s -> snapshot %s (%d rows)", file_name, version, snapshot.rows)
    return IngestResult("ingested", snapshot)
