"""Ingest image drops (MNIST IDX or CIFAR-10 binary): each new drop yields a new cumulative snapshot whose
manifest lists the shards of every drop so far; only the new drop's shards are written.

A drop is a folder in ``landing/<dataset>/`` holding one dataset's files in their original names. Each of its
splits becomes one immutable images shard and one labels shard (``.npy``, content-addressed) under
``curated/<dataset>/shards/drop=<digest[:16]>/``. The new snapshot's manifest lists the head snapshot's
shards plus these, so version N+1 includes everything in version N and nothing is copied: an ingest writes
the drop's shards, one manifest and the head pointer (``curated/<dataset>/head.json``), whatever the history.

The head manifest carries what the next drop is checked against: the cumulative ``drops`` (the drop digests,
oldest first, and ``drop_versions``, the snapshot each one made), ``image_shape``, ``classes`` and the
``splits`` row counts. So an ingest reads one manifest, not the history. The first drop of a dataset must
carry both splits; a later drop must carry a training split of the same image shape. The same drop landed
again yields no new version and no event; a retry after a crash finishes the interrupted ingest. The whole
read-head -> write-shards -> commit runs under the dataset's lock, so two drops ingested at once serialise.

Snapshots written before shards (one folder with ``<split>_images.npy`` and ``<split>_labels.npy``) stay
readable; the first drop after them extends the newest one by listing its arrays where they are.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np

from retrain import locks, snapshots, storage
from retrain.data import cifar10, images, mnist
from retrain.errors import DataFormatError, LandingPathError, SnapshotError
from retrain.ingest import landing
from retrain.ingest.power import IngestResult

log = logging.getLogger(__name__)
DATASETS = ("mnist", "cifar10")
ARRAYS = [f"{split}_{kind}.npy" for split in images.SPLITS for kind in images.KINDS]  # an older snapshot's files


def _known_names(dataset: str) -> set[str]:
    if dataset == "mnist":
        return {n + s for pair in mnist.FILES.values() for n in pair for s in ("", ".gz")}
    return {*cifar10.TRAIN_FILES, cifar10.TEST_FILE, cifar10.META_FILE}


def read_drop(dataset: str, drop: str, files: dict[str, bytes]) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Class names and splits of one drop, with the structural rules every drop must meet."""
    if not files:
        raise DataFormatError(drop, "a drop must hold the dataset's files", "empty folder")
    other = "cifar10" if dataset == "mnist" else "mnist"
    foreign = sorted(set(files) & _known_names(other))
    if foreign:
        raise DataFormatError(drop, f"a drop holds one dataset's files ({dataset})", f"{other} files too: {foreign}")
    if dataset == "mnist":
        classes, splits = mnist.CLASSES, mnist.read_files(files)
    else:
        classes, splits = cifar10.read_files(files)
    if "train" not in splits:
        raise DataFormatError(drop, "a drop must include a training split", f"only {sorted(splits) or 'no'} split(s)")
    return classes, splits


def _drop_digest(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return digest.hexdigest()


def versions(dataset: str) -> list[snapshots.Snapshot]:
    """Every committed snapshot of a dataset, oldest first (see :func:`retrain.snapshots.committed`)."""
    return snapshots.committed(dataset)


def open_splits(snapshot: snapshots.Snapshot) -> dict[str, images.ShardedSplit]:
    """The snapshot's splits, memory-mapped shard by shard (what training, evaluation and the gate read)."""
    return images.open_splits(snapshot)


def load_splits(snapshot: snapshots.Snapshot) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The snapshot's splits as whole arrays in memory: for small snapshots and tests; the workload's steps
    read :func:`open_splits` instead."""
    return {split: s.arrays() for split, s in open_splits(snapshot).items()}


def _read_arrays(snapshot: snapshots.Snapshot) -> dict[str, np.ndarray]:
    """``<split>_<kind>.npy`` -> whole array, for either layout (small snapshots only)."""
    return {f"{split}_{kind}.npy": array for split, pair in load_splits(snapshot).items()
            for kind, array in zip(images.KINDS, pair)}


def _read_folder(location: str) -> dict[str, bytes]:
    if not storage.isdir(location):
        raise DataFormatError(storage.name(location), "an image drop is a folder of the dataset's files", "a single file")
    return {name: storage.read_bytes(storage.join(location, name)) for name in landing.data_files(location)}


def _latest(dataset: str) -> snapshots.Snapshot | None:
    """The snapshot a new drop extends: the head; before the first sharded commit, the newest snapshot of the
    older layout (one listing, only until a head exists)."""
    head = snapshots.head(dataset)
    if head is not None:
        return head
    history = versions(dataset)
    if not history:
        return None
    newest = history[-1]
    if newest.sharded:  # committed, but the crash came before the head moved: move it now
        newest = snapshots.commit_growing(dataset, newest.version, newest.manifest["files"], parent=None,
                                          rows=newest.rows, source_files=[], produced_by={}, extra={})
    return newest


def _inherited(latest: snapshots.Snapshot | None) -> list[dict]:
    """The entries of every shard the next snapshot keeps: the head's own, or an older snapshot's arrays
    listed where they are (``version=<v>/train_images.npy``, relative to the dataset's folder)."""
    if latest is None:
        return []
    if latest.sharded:
        return list(latest.manifest["files"])
    folder = snapshots.folder_name(latest.version)
    return [{**entry, "path": f"{folder}/{entry['path']}", "split": split, "kind": kind}
            for split, pairs in images.split_entries(latest).items()
            for pair in pairs for kind, entry in zip(images.KINDS, pair)]


def _holder(dataset: str, latest: snapshots.Snapshot, digest: str) -> snapshots.Snapshot:
    """The snapshot that added the drop ``digest`` (which ``latest`` holds): named by ``drop_versions``; for
    drops from before it, found by following ``parent`` back (older snapshots only)."""
    drops = latest.manifest.get("drops", [])
    made = latest.manifest.get("drop_versions") or []
    index = drops.index(digest)
    if index < len(made) and made[index]:
        return latest if made[index] == latest.version else (snapshots.load(dataset, made[index]) or latest)
    snap = latest
    while snap.manifest.get("drops", [])[-1:] != [digest]:
        parent = snap.manifest.get("parent")
        older = snapshots.load(dataset, parent) if parent else None
        if older is None or digest not in older.manifest.get("drops", []):
            break
        snap = older
    return snap


def _check_shape(drop: str, latest: snapshots.Snapshot | None, splits: dict) -> None:
    expected = tuple(latest.manifest.get("image_shape") or ()) if latest else tuple(splits["train"][0].shape[1:])
    for split, (imgs, _) in splits.items():
        if expected and tuple(imgs.shape[1:]) != expected:
            raise SnapshotError(f"{drop}: image shape {tuple(imgs.shape[1:])} ({split}) differs from "
                                f"{'snapshot ' + latest.version if latest else 'the training split'}'s {expected}")


def ingest(dataset: str, name: str, run_id: str) -> IngestResult:
    """The catalog's ingest step (``(dataset, landed name, run id)``): :func:`ingest_drop`."""
    return ingest_drop(dataset, name, run_id)


def ingest_drop(dataset: str, drop: str, run_id: str) -> IngestResult:
    """Claim, check and snapshot one landed drop folder. Bad drops are quarantined and the error re-raised."""
    if dataset not in DATASETS:
        raise ValueError(f"image datasets are {DATASETS}, not {dataset!r}")
    try:
        claimed = landing.claim(dataset, drop, run_id)
    except LandingPathError:
        existing = landing.committed_by_run(dataset, drop, run_id)
        if existing is None:
            raise
        return IngestResult("resumed", existing)
    with landing.quarantined_on_format_error(dataset, claimed, run_id):
        files = _read_folder(claimed)
    digest = _drop_digest(files)

    with locks.named_lock(f"snapshot.{dataset}"):
        latest = _latest(dataset)
        if latest is not None and digest in latest.manifest.get("drops", []):
            snap = _holder(dataset, latest, digest)
            landing.archive(dataset, claimed, snap.version)
            produced = snap.manifest.get("produced_by", {}).get("run_id") == run_id and snap.manifest["drops"][-1] == digest
            return IngestResult("resumed" if produced else "duplicate", snap)
        with landing.quarantined_on_format_error(dataset, claimed, run_id):
            classes, splits = read_drop(dataset, drop, files)
            if latest is None and "test" not in splits:
                raise DataFormatError(drop, "the first drop of a dataset must include a test split", "only a training split")
        _check_shape(drop, latest, splits)

        parent = latest.version if latest else ""
        version = hashlib.sha256(f"{parent}\0{digest}".encode()).hexdigest()[:16]
        folder = f"drop={digest[:16]}"
        # shards already there: an earlier try of this ingest wrote them and stopped before its commit
        interrupted = storage.exists(storage.join(snapshots.dataset_root(dataset), snapshots.SHARDS, folder))
        added = [
            snapshots.write_shard(dataset, folder, f"-{split}_{kind}.npy", images.array_bytes(array),
                                  rows=int(len(array)), split=split, kind=kind, drop=digest)
            for split, pair in splits.items() for kind, array in zip(images.KINDS, pair)
        ]
        counts = dict(latest.manifest.get("splits", {})) if latest else {}
        for split, (_, labels) in splits.items():
            counts[split] = int(counts.get(split, 0)) + int(len(labels))
        drops = (latest.manifest.get("drops", []) if latest else []) + [digest]
        made = list(latest.manifest.get("drop_versions") or []) if latest else []
        made = made + [None] * (len(drops) - 1 - len(made)) + [version]
        snapshot = snapshots.commit_growing(
            dataset, version, _inherited(latest) + added, parent=latest, rows=sum(counts.values()),
            source_files=[{"name": f"{drop}/{name}", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                          for name, data in sorted(files.items())],
            produced_by={"run_id": run_id},
            extra={"classes": list(classes), "drops": drops, "drop_versions": made, "splits": counts,
                   "image_shape": list(splits["train"][0].shape[1:])},
        )
        landing.archive(dataset, claimed, version)
    log.info("%s/%s -> snapshot %s (%s, %d new shard bytes)", dataset, drop, version, json.dumps(counts),
             sum(e["bytes"] for e in added))
    return IngestResult("resumed" if interrupted else "ingested", snapshot)
