"""Ingest image drops (MNIST IDX or CIFAR-10 binary): each new drop yields a new cumulative snapshot.

A drop is a folder in ``landing/<dataset>/`` holding one dataset's files in their original names. Its
training split (and test split, if present) is appended to the latest snapshot's arrays, so version N+1
includes everything in version N. The first drop of a dataset must carry both splits; a later drop must
carry a training split. The same drop landed again yields no new version and no event.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np

from retrain import snapshots, storage
from retrain.data import cifar10, images, mnist
from retrain.errors import DataFormatError, LandingPathError, SnapshotError
from retrain.ingest import landing
from retrain.ingest.power import IngestResult
from retrain.settings import get_settings

log = logging.getLogger(__name__)
DATASETS = ("mnist", "cifar10")
ARRAYS = [f"{split}_{kind}.npy" for split in images.SPLITS for kind in ("images", "labels")]


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
    """Committed snapshots of a dataset, oldest first (by their sequence number)."""
    root = get_settings().curated(dataset)
    found = []
    for name in storage.listdir(root):
        if name.startswith("version="):
            snap = snapshots.load(dataset, name.split("=", 1)[1])
            if snap is not None:
                found.append(snap)
    return sorted(found, key=lambda s: s.manifest.get("sequence", 0))


def _read_arrays(snapshot: snapshots.Snapshot) -> dict[str, np.ndarray]:
    return {name: images.load_array(storage.read_bytes(snapshot.file(name))) for name in snapshot.files if name.endswith(".npy")}


def load_splits(snapshot: snapshots.Snapshot) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    arrays = _read_arrays(snapshot)
    return {split: (arrays[f"{split}_images.npy"], arrays[f"{split}_labels.npy"]) for split in images.SPLITS
            if f"{split}_images.npy" in arrays}


def _read_folder(location: str) -> dict[str, bytes]:
    if not storage.isdir(location):
        raise DataFormatError(storage.name(location), "an image drop is a folder of the dataset's files", "a single file")
    return {name: storage.read_bytes(storage.join(location, name)) for name in landing.data_files(location)}


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
        history = versions(dataset)
        for snap in history:
            if digest in snap.manifest.get("drops", []):
                landing.archive(dataset, claimed, snap.version)
                produced = snap.manifest.get("produced_by", {}).get("run_id") == run_id and snap.manifest["drops"][-1] == digest
                return IngestResult("resumed" if produced else "duplicate", snap)
        classes, splits = read_drop(dataset, drop, files)
        latest = history[-1] if history else None
        if latest is None and "test" not in splits:
            raise DataFormatError(drop, "the first drop of a dataset must include a test split", "only a training split")

    if latest is not None:
        previous = load_splits(latest)
        if previous["train"][0].shape[1:] != splits["train"][0].shape[1:]:
            raise SnapshotError(f"{drop}: image shape {splits['train'][0].shape[1:]} differs from snapshot "
                                f"{latest.version}'s {previous['train'][0].shape[1:]}")
        for split, (imgs, labels) in previous.items():
            if split in splits:
                splits[split] = (np.concatenate([imgs, splits[split][0]]), np.concatenate([labels, splits[split][1]]))
            else:
                splits[split] = (imgs, labels)
    parent = latest.version if latest else ""
    version = hashlib.sha256(f"{parent}\0{digest}".encode()).hexdigest()[:16]
    drops = (latest.manifest.get("drops", []) if latest else []) + [digest]

    def write(folder: str) -> list[dict]:
        entries = []
        for split, (imgs, labels) in splits.items():
            for kind, array in (("images", imgs), ("labels", labels)):
                name = f"{split}_{kind}.npy"
                data = images.array_bytes(array)
                storage.write_bytes(storage.join(folder, name), data)
                entries.append({"path": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                                "rows": int(len(array))})
        return entries

    rows = sum(len(labels) for _, labels in splits.values())
    snapshot = snapshots.commit(
        dataset, version, write, rows=rows,
        source_files=[{"name": f"{drop}/{name}", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                      for name, data in sorted(files.items())],
        produced_by={"run_id": run_id},
        extra={"classes": list(classes), "drops": drops, "parent": parent or None,
               "sequence": (latest.manifest.get("sequence", 0) + 1) if latest else 1,
               "splits": {split: int(len(labels)) for split, (_, labels) in splits.items()},
               "image_shape": list(splits["train"][0].shape[1:])},
    )
    landing.archive(dataset, claimed, version)
    log.info("%s/%s -> snapshot %s (%s)", dataset, drop, version, json.dumps(snapshot.manifest["splits"]))
    return IngestResult("ingested", snapshot)
