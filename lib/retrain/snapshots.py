"""Immutable curated snapshots: data files plus a manifest, committed in one step.

Layout: ``curated/<dataset>/version=<version>/`` holding the data files and ``manifest.json``. A snapshot
exists once its manifest exists; locally the whole folder is renamed into place, on an object store the
manifest is written last.

Partitioned datasets (ticks) keep every build of a partition: ``curated/<dataset>/date=YYYY-MM-DD/
version=<version>/``, plus ``date=…/current.json`` naming the partition's current version. A rebuild
commits a new version folder, then moves the pointer (one atomic write, or one PUT), so an event, a training
window or a reader that names a version always finds exactly that build, and the old build stays readable
until an explicit :func:`retrain.ingest.ticks.gc` removes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from retrain import storage
from retrain.assets import EVENT_SCHEMA_VERSION, data_asset
from retrain.errors import SnapshotError
from retrain.settings import get_settings

MANIFEST = "manifest.json"
POINTER = "current.json"  # inside a partition's folder: which committed version is current


@dataclass(frozen=True)
class Snapshot:
    """A committed snapshot, as described by its manifest."""

    dataset: str
    version: str
    location: str
    manifest: dict = field(repr=False)

    @property
    def rows(self) -> int:
        return int(self.manifest["rows"])

    @property
    def sha256(self) -> str:
        return self.manifest["sha256"]

    @property
    def partition(self) -> str | None:
        return self.manifest.get("partition")

    def file(self, name: str) -> str:
        return storage.join(self.location, name)

    @property
    def files(self) -> list[str]:
        return [f["path"] for f in self.manifest["files"]]

    def event_extra(self) -> dict:
        """The asset-event extra of the design's contract 2."""
        return {
            "schema": EVENT_SCHEMA_VERSION,
            "dataset": self.dataset,
            "uri": get_settings().uri(self.location),
            "version": self.version,
            "sha256": self.sha256,
            "rows": self.rows,
            "partition": self.partition,
            "source_files": [s["name"] for s in self.manifest.get("source_files", [])],
        }


def folder_name(version: str, partition: str | None = None) -> str:
    return f"date={partition}/version={version}" if partition else f"version={version}"


def snapshot_location(dataset: str, version: str, partition: str | None = None) -> str:
    return get_settings().curated(data_asset(dataset).name, folder_name(version, partition))


def partition_location(dataset: str, partition: str) -> str:
    """The folder holding every committed version of one partition, and its pointer."""
    return get_settings().curated(data_asset(dataset).name, f"date={partition}")


def current_version(dataset: str, partition: str) -> str | None:
    """The version the partition's pointer names, or None when the partition was never committed."""
    pointer = storage.join(partition_location(dataset, partition), POINTER)
    if not storage.exists(pointer):
        return None
    return json.loads(storage.read_text(pointer))["version"]


def set_current(snapshot: Snapshot) -> None:
    """Make a committed version its partition's current one (a single atomic write: readers see the old
    pointer or the new)."""
    if not snapshot.partition:
        raise SnapshotError(f"{snapshot.location}: only a partition's version has a current pointer")
    pointer = storage.join(partition_location(snapshot.dataset, snapshot.partition), POINTER)
    storage.write_text(pointer, json.dumps({
        "version": snapshot.version, "sha256": snapshot.sha256,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=2, sort_keys=True))


def partition_versions(dataset: str, partition: str) -> list[Snapshot]:
    """Every committed version of a partition, oldest first (commit sequence, then commit time)."""
    found = []
    for name in storage.listdir(partition_location(dataset, partition)):
        if name.startswith("version="):
            snapshot = load(dataset, name.split("=", 1)[1], partition)
            if snapshot is not None:
                found.append(snapshot)
    return sorted(found, key=lambda s: (s.manifest.get("sequence", 0), s.manifest.get("created_at", ""), s.version))


def open_version(dataset: str, partition: str, version: str, sha256: str) -> Snapshot:
    """Exactly the named version of a partition, its files checked against the manifest and the manifest's
    digest against ``sha256`` (what an event or a recorded training window named). SnapshotError otherwise."""
    snapshot = load(dataset, version, partition)
    if snapshot is None:
        known = [s.version for s in partition_versions(dataset, partition)]
        raise SnapshotError(
            f"{snapshot_location(dataset, version, partition)}: {dataset} partition {partition} version {version} "
            f"is not committed (rule: a run reads exactly the versions it recorded; committed versions: {known})"
        )
    verify(snapshot, sha256)
    return snapshot


def content_digest(files: list[dict]) -> str:
    """One digest over the data files' own digests, in name order."""
    digest = hashlib.sha256()
    for entry in sorted(files, key=lambda f: f["path"]):
        digest.update(f"{entry['path']}\0{entry['sha256']}\n".encode())
    return digest.hexdigest()


def load(dataset: str, version: str, partition: str | None = None) -> Snapshot | None:
    """The committed snapshot, or None when there is none. For a partition an empty ``version`` means the
    partition's current version."""
    if partition and not version:
        version = current_version(dataset, partition) or ""
        if not version:
            return None
    location = snapshot_location(dataset, version, partition)
    manifest_file = storage.join(location, MANIFEST)
    if not storage.exists(manifest_file):
        return None
    manifest = json.loads(storage.read_text(manifest_file))
    return Snapshot(dataset=dataset, version=manifest["version"], location=location, manifest=manifest)


def from_uri(uri: str) -> Snapshot:
    """Open the snapshot an event names (its ``uri``), checking that the manifest is there."""
    location = storage.from_uri(uri)
    manifest_file = storage.join(location, MANIFEST)
    if not storage.exists(manifest_file):
        raise SnapshotError(f"{uri}: no committed snapshot there (rule: a snapshot exists once {MANIFEST} does)")
    manifest = json.loads(storage.read_text(manifest_file))
    return Snapshot(dataset=manifest["dataset"], version=manifest["version"], location=location, manifest=manifest)


def verify(snapshot: Snapshot, expected_sha256: str | None = None) -> None:
    """Check every data file against the manifest (and the manifest against the event's sha256)."""
    if expected_sha256 and snapshot.sha256 != expected_sha256:
        raise SnapshotError(
            f"{snapshot.location}: manifest sha256 must equal the event's (observed {snapshot.sha256[:12]}…, "
            f"event {expected_sha256[:12]}…)"
        )
    for entry in snapshot.manifest["files"]:
        location = snapshot.file(entry["path"])
        if not storage.exists(location):
            raise SnapshotError(f"{location}: file listed in the manifest is missing")
        actual = storage.sha256(location)
        if actual != entry["sha256"]:
            raise SnapshotError(f"{location}: sha256 must match the manifest (observed {actual[:12]}…, manifest {entry['sha256'][:12]}…)")


def commit(
    dataset: str,
    version: str,
    write_files: Callable[[str], list[dict]],
    *,
    rows: int,
    source_files: list[dict],
    partition: str | None = None,
    produced_by: dict | None = None,
    extra: dict | None = None,
    schema_version: int = 1,
) -> Snapshot:
    """Write a snapshot atomically. ``write_files(folder)`` writes the data files and returns their entries
    (``{"path", "sha256", "bytes", "rows"}``); the manifest is written last, inside the staged folder.

    A partition's version is immutable: committing a version that is already there writes nothing and only
    makes it current again; a new version gets the next ``sequence`` of its partition and becomes current
    once its manifest is in place (a crash in between leaves the previous version current)."""
    location = snapshot_location(dataset, version, partition)
    if partition:
        existing = load(dataset, version, partition)
        if existing is not None:
            set_current(existing)
            return existing
        sequence = max((s.manifest.get("sequence", 0) for s in partition_versions(dataset, partition)), default=0) + 1
        extra = {"sequence": sequence, **(extra or {})}
    with storage.staged_directory(location) as staging:
        files = write_files(staging)
        manifest = {
            "schema": EVENT_SCHEMA_VERSION,
            "dataset": dataset,
            "version": version,
            "partition": partition,
            "schema_version": schema_version,
            "rows": rows,
            "files": files,
            "sha256": content_digest(files),
            "source_files": source_files,
            "produced_by": produced_by or {},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **(extra or {}),
        }
        storage.write_text(storage.join(staging, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True))
    snapshot = Snapshot(dataset=dataset, version=version, location=location, manifest=manifest)
    if partition:
        set_current(snapshot)
    return snapshot


def add_source_file(snapshot: Snapshot, source: dict) -> Snapshot:
    """Record one more landed file whose content is this snapshot's (the same bytes under another name).

    Only the manifest's ``source_files`` grows (one atomic write); the data files, and so the snapshot's
    sha256, never change. Idempotent; call it holding the snapshot's lock so two additions do not race.
    """
    if any(s["name"] == source["name"] for s in snapshot.manifest.get("source_files", [])):
        return snapshot
    manifest = dict(snapshot.manifest) | {"source_files": [*snapshot.manifest.get("source_files", []), source]}
    storage.write_text(storage.join(snapshot.location, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True))
    return Snapshot(dataset=snapshot.dataset, version=snapshot.version, location=snapshot.location, manifest=manifest)


def write_parquet(table, folder: str, name: str = "part-0.parquet") -> dict:
    """Write one parquet file into a (staging) folder and describe it for the manifest."""
    import pyarrow.parquet as pq

    location = storage.join(folder, name)
    if storage.is_local(location):
        pq.write_table(table, location, compression="zstd")
    else:
        import io

        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        storage.write_bytes(location, buffer.getvalue())
    return {"path": name, "sha256": storage.sha256(location), "bytes": storage.size(location), "rows": table.num_rows}


def read_parquet(snapshot: Snapshot, columns: list[str] | None = None):
    """All data files of a snapshot as one Arrow table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for name in snapshot.files:
        with storage.open_read(snapshot.file(name)) as handle:
            tables.append(pq.read_table(handle, columns=columns))
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
