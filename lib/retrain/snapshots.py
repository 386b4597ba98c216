"""Immutable curated snapshots: data files plus a manifest, committed in one step.

Layout: ``curated/<dataset>/version=<version>/`` holding the data files and ``manifest.json``. A snapshot
exists once its manifest exists; locally the whole folder is renamed into place, on an object store the
manifest is written last.

Partitioned datasets (ticks) keep every build of a partition: ``curated/<dataset>/date=YYYY-MM-DD/
version=<version>/``, plus ``date=…/current.json`` naming the partition's current version. A rebuild
commits a new version folder, then moves the pointer (one atomic write, or one PUT), so an event, a training
window or a reader that names a version always finds exactly that build, and the old build stays readable
until an explicit :func:`retrain.ingest.ticks.gc` removes it.

Growing datasets (power, images) are *manifests over shards*: immutable, content-addressed data files under
``curated/<dataset>/shards/…``, shared by every snapshot that holds them. Snapshot N+1's manifest lists
snapshot N's shards plus the shards its arrival added (nothing is copied); its ``files`` paths are relative
to the dataset's folder (``"layout": "shards"``). ``curated/<dataset>/head.json`` names the newest snapshot,
so an ingest reads one manifest, not the history. Snapshots written before shards (one folder holding its
data files) stay readable as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from retrain import storage
from retrain.assets import EVENT_SCHEMA_VERSION, data_asset
from retrain.errors import SnapshotError
from retrain.settings import get_settings

MANIFEST = "manifest.json"
POINTER = "current.json"  # inside a partition's folder: which committed version is current
HEAD = "head.json"  # inside a growing dataset's folder: its newest snapshot
SHARDS = "shards"  # inside a growing dataset's folder: the immutable data files its snapshots list
SHARDED = "shards"  # the manifest's "layout" for a snapshot whose files are shards


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

    @property
    def sharded(self) -> bool:
        return self.manifest.get("layout") == SHARDED

    def file(self, name: str) -> str:
        """Where a file the manifest lists lives: shards relative to the dataset's folder, the data files of
        an older (unsharded) snapshot inside its own folder."""
        return storage.join(storage.parent(self.location) if self.sharded else self.location, name)

    def entries(self, **match: Any) -> list[dict]:
        """The manifest's file entries whose fields equal ``match`` (all of them without a filter)."""
        return [f for f in self.manifest["files"] if all(f.get(k) == v for k, v in match.items())]

    @property
    def files(self) -> list[str]:
        return [f["path"] for f in self.manifest["files"]]

    def event_extra(self) -> dict:
        """The asset-event extra of the design's contract 2 (a :class:`retrain.events.DataEvent`)."""
        from retrain.events import DataEvent

        return DataEvent(dataset=self.dataset, uri=get_settings().uri(self.location), version=self.version,
                         sha256=self.sha256, rows=self.rows, partition=self.partition,
                         source_files=[s["name"] for s in self.manifest.get("source_files", [])],
                         **self._growth()).extra()

    def _growth(self) -> dict:
        """For a growing series: what the arrival added and what the snapshot holds (the full lists of
        corrected readings stay in the manifest)."""
        m = self.manifest
        if not m.get("series"):
            return {}
        arrival = m.get("arrival") or {}
        return {
            "time_range": m.get("time_range"),
            "parent": m.get("parent"),
            "gaps": m.get("gaps", [])[:20],
            "arrival": {k: arrival[k] for k in ("file", "rows", "rows_added", "rows_corrected", "time_range",
                                                "months", "gaps_opened") if k in arrival},
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


def shard_cache() -> Path:
    """Where files of a snapshot on an object store are copied before they are read or memory-mapped (one file
    per sha256: content-addressed, so one copy serves every snapshot that lists it)."""
    from retrain.settings import get_settings

    return Path(os.environ.get("RETRAIN_SHARD_CACHE") or get_settings().home / "cache" / "shards")


SHARD_CACHE_BYTES = 20 << 30  # default bound of the shard cache (RETRAIN_SHARD_CACHE_BYTES overrides it)
SHARD_CACHE_GRACE_SECONDS = 3600  # a file handed out this recently is never pruned: a step may not have opened it yet


def shard_cache_bytes() -> int:
    """The shard cache's bound in bytes (``RETRAIN_SHARD_CACHE_BYTES``; ConfigError on a value that is not one)."""
    from retrain.errors import ConfigError

    raw = os.environ.get("RETRAIN_SHARD_CACHE_BYTES")
    if raw is None:
        return SHARD_CACHE_BYTES
    try:
        value = int(raw)
        if value < 0:
            raise ValueError
    except ValueError:
        raise ConfigError(f"RETRAIN_SHARD_CACHE_BYTES must be a number of bytes >= 0 (observed {raw!r})") from None
    return value


def local_file(location: str, sha256: str) -> str:
    """A local path holding exactly the file at ``location``: the file itself when it is local, else a copy in
    :func:`shard_cache` named by its sha256 (downloaded once, checked while it streams, then renamed into place;
    a copy in the cache has matched its digest). Each hand-out marks the copy used (its mtime); the cache is
    then pruned to its bound, least recently used first (:func:`prune_shard_cache`)."""
    if storage.is_local(location):
        return location
    target = shard_cache() / f"{sha256}{Path(storage.name(location)).suffix}"
    if target.exists():
        try:
            os.utime(target)  # used now: the last to be pruned
            return str(target)  # only ever renamed into place once its content matched
        except FileNotFoundError:
            pass  # pruned by another process a moment ago: downloaded again below
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    digest = hashlib.sha256()
    try:
        with storage.open_stream(location) as source, open(tmp, "wb") as handle:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                handle.write(chunk)
        if digest.hexdigest() != sha256:
            raise SnapshotError(f"{location}: sha256 must match the manifest "
                                f"(observed {digest.hexdigest()[:12]}…, manifest {sha256[:12]}…)")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    prune_shard_cache()
    return str(target)


def prune_shard_cache(limit: int | None = None, *, grace_seconds: float | None = None) -> list[str]:
    """Remove the least recently used copies until the cache holds at most ``limit`` bytes (default
    :func:`shard_cache_bytes`); returns the names removed. A copy handed out within ``grace_seconds`` (default
    :data:`SHARD_CACHE_GRACE_SECONDS`) stays even
    over the bound: a step that was given its path may not have opened it yet (an open or memory-mapped copy
    stays readable after its unlink anyway). A removed copy is downloaded again, checked, when next needed."""
    import time

    limit = shard_cache_bytes() if limit is None else limit
    grace_seconds = SHARD_CACHE_GRACE_SECONDS if grace_seconds is None else grace_seconds
    folder = shard_cache()
    entries = []
    for path in folder.iterdir() if folder.exists() else ():
        if path.name.startswith("."):
            continue  # a download in progress
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    removed, now = [], time.time()
    for used, size, path in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        if now - used < grace_seconds:
            break  # everything after this one was used more recently still
        path.unlink(missing_ok=True)
        total -= size
        removed.append(path.name)
    return removed


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
        if not storage.is_local(location):  # checked as it lands in the cache, where the steps then read it
            local_file(location, entry["sha256"])
            continue
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


# --- growing datasets: shards and the head pointer --------------------------------------------------------

def dataset_root(dataset: str) -> str:
    return get_settings().curated(data_asset(dataset).name)


def committed(dataset: str) -> list[Snapshot]:
    """Every committed snapshot of a non-partitioned dataset, oldest first (``sequence``, commit time, version).
    Reads every manifest: for listings and one-off commands, never on an ingest path (that reads :func:`head`)."""
    root = dataset_root(dataset)
    names = [n.split("=", 1)[1] for n in storage.listdir(root) if n.startswith("version=")] if storage.exists(root) else []
    found = [s for s in (load(dataset, n) for n in names) if s is not None]
    return sorted(found, key=lambda s: (s.manifest.get("sequence", 0), s.manifest.get("created_at", ""), s.version))


def head(dataset: str) -> Snapshot | None:
    """The newest snapshot of a growing dataset (what its next arrival extends), or None before the first."""
    pointer = storage.join(dataset_root(dataset), HEAD)
    if not storage.exists(pointer):
        return None
    return load(dataset, json.loads(storage.read_text(pointer))["version"])


def write_shard(dataset: str, folder: str, suffix: str, data: bytes, **fields: Any) -> dict:
    """Write one immutable shard named by its content (``shards/<folder>/<sha256[:16]><suffix>``) and return
    its manifest entry. A shard already there is not written again (a retry, or the same bytes in another
    drop), so shards are never rewritten and never change."""
    digest = hashlib.sha256(data).hexdigest()
    path = "/".join([SHARDS, folder.strip("/"), f"{digest[:16]}{suffix}"]) if folder else f"{SHARDS}/{digest[:16]}{suffix}"
    location = storage.join(dataset_root(dataset), path)
    if not storage.exists(location) or storage.size(location) != len(data):
        storage.write_bytes(location, data)
    return {"path": path, "sha256": digest, "bytes": len(data), **fields}


def commit_growing(dataset: str, version: str, files: list[dict], *, parent: Snapshot | None, rows: int,
                   source_files: list[dict], produced_by: dict, extra: dict, schema_version: int = 1) -> Snapshot:
    """Commit a snapshot of a growing dataset whose shards are already written: only its manifest is new.
    Its ``sequence`` follows its parent's, and it becomes the dataset's head once committed (a crash in
    between leaves the parent as head and a retry finishes the job). Call it holding the dataset's lock."""
    existing = load(dataset, version)
    if existing is None:
        existing = commit(
            dataset, version, lambda _folder: files, rows=rows, source_files=source_files, produced_by=produced_by,
            schema_version=schema_version,
            extra={"layout": SHARDED, "parent": parent.version if parent else None,
                   "sequence": (int(parent.manifest.get("sequence") or 0) + 1) if parent else 1, **extra},
        )
    current = head(dataset)
    if current is not None and int(current.manifest.get("sequence") or 0) > int(existing.manifest.get("sequence") or 0):
        return existing  # never move the head back
    storage.write_text(storage.join(dataset_root(dataset), HEAD), json.dumps({
        "version": existing.version, "sha256": existing.sha256, "sequence": existing.manifest.get("sequence"),
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=2, sort_keys=True))
    return existing


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

    # a remote file is read from the shard cache, where it landed checked against its sha256 (verify puts it there)
    tables = [storage.read_parquet(local_file(snapshot.file(entry["path"]), entry["sha256"]), columns=columns)
              for entry in snapshot.manifest["files"]]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
