"""Image datasets as curated arrays, read memory-mapped shard by shard, and the per-image statistics table
their quality suites validate.

Arrays are uint8 ``.npy`` (images ``[N, H, W]`` or ``[N, H, W, C]``, labels ``[N]``): portable,
memory-mappable and never unpickled (``allow_pickle=False``). A snapshot (see :mod:`retrain.ingest.images`)
lists, per split, one images shard and one labels shard per drop; older snapshots hold one
``<split>_images.npy`` / ``<split>_labels.npy`` pair in their own folder. Either way :func:`open_splits`
gives a :class:`ShardedSplit` per split: the images as a :class:`ShardedArray` over ``np.load(path,
mmap_mode="r")`` views of the shards (shards on an object store are first copied into a local cache, checked
against their sha256), the labels as one small in-memory array. Training, evaluation and the quality gate
gather what they need from the maps (a batch, a chunk); nothing concatenates a whole split.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "test")
KINDS = ("images", "labels")
STATS_CHUNK = 2048  # images per block of the statistics pass (CIFAR-10: ~50 MB of temporaries)


def array_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def load_array(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


# ---------------------------------------------------------------------------------------------------------
# shards


def _map(path: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:  # a shard with no rows: nothing to map
        return np.load(path, allow_pickle=False)


class ShardedArray:
    """Rows of several ``.npy`` files (memory-mapped) seen as one array, in shard order.

    ``a[i]`` is one row, ``a[start:stop]`` and ``a[indices]`` a new contiguous array holding just those rows,
    gathered shard by shard. Pickles as its file paths (a DataLoader worker maps the files itself)."""

    def __init__(self, paths: list[str]):
        self.paths = list(paths)
        self._open()

    def _open(self) -> None:
        self.parts = [_map(p) for p in self.paths]
        if not self.parts:
            raise ValueError("a sharded array needs at least one shard")
        first = self.parts[0]
        for path, part in zip(self.paths, self.parts):
            if part.shape[1:] != first.shape[1:] or part.dtype != first.dtype:
                raise ValueError(f"{path}: every shard must hold {first.dtype} rows of shape {first.shape[1:]} "
                                 f"(observed {part.dtype} {part.shape[1:]})")
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.shape = (int(self.offsets[-1]), *first.shape[1:])
        self.dtype = first.dtype

    def __getstate__(self) -> dict:
        return {"paths": self.paths}

    def __setstate__(self, state: dict) -> None:
        self.paths = state["paths"]
        self._open()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[0:len(self)]
        return whole if dtype is None else whole.astype(dtype)

    def blocks(self, size: int = STATS_CHUNK) -> Iterator[np.ndarray]:
        """The rows in order, as views of at most ``size`` rows that never span two shards."""
        for part in self.parts:
            for start in range(0, len(part), size):
                yield part[start:start + size]

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            i = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"index {index} is out of bounds for {len(self)} rows")
            p = int(np.searchsorted(self.offsets, i, side="right")) - 1
            return np.asarray(self.parts[p][i - self.offsets[p]])
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return self._range(start, max(start, stop))
            index = np.arange(start, stop, step)
        return self.take(np.asarray(index))

    def _range(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.shape[1:]), dtype=self.dtype)
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        done = 0
        for p in range(max(first, 0), len(self.parts)):
            lo, hi = max(start, self.offsets[p]), min(stop, self.offsets[p + 1])
            if lo >= stop:
                break
            if hi > lo:
                out[done:done + hi - lo] = self.parts[p][lo - self.offsets[p]:hi - self.offsets[p]]
                done += hi - lo
        return out

    def take(self, indices: np.ndarray) -> np.ndarray:
        """The rows at ``indices`` (any order, repeats allowed) as one contiguous array."""
        indices = np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        indices = indices.astype(np.int64, copy=False).ravel()
        if len(indices) and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(f"indices must lie in [0, {len(self)})")
        indices = np.where(indices < 0, indices + len(self), indices)
        out = np.empty((len(indices), *self.shape[1:]), dtype=self.dtype)
        if len(self.parts) == 1:
            out[:] = self.parts[0][indices]
            return out
        which = np.searchsorted(self.offsets, indices, side="right") - 1
        for p in np.unique(which):
            at = np.flatnonzero(which == p)
            out[at] = self.parts[p][indices[at] - self.offsets[p]]
        return out


@dataclass(frozen=True)
class ShardedSplit:
    """One split of a snapshot: images memory-mapped across shards, labels in memory (one byte an image)."""

    images: ShardedArray
    labels: np.ndarray

    def __post_init__(self):
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):  # unpacks as ``images, labels``
        return iter((self.images, self.labels))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole split concatenated in memory: for small splits and small things only."""
        return np.asarray(self.images), self.labels


def split_entries(snapshot) -> dict[str, list[tuple[dict, dict]]]:
    """Per split, the (images, labels) manifest entries in row order, for either snapshot layout."""
    out: dict[str, list[tuple[dict, dict]]] = {}
    for split in SPLITS:
        if snapshot.sharded:
            imgs = snapshot.entries(split=split, kind="images")
            labels = snapshot.entries(split=split, kind="labels")
        else:  # one folder with <split>_images.npy and <split>_labels.npy
            imgs = [f for f in snapshot.manifest["files"] if f["path"] == f"{split}_images.npy"]
            labels = [f for f in snapshot.manifest["files"] if f["path"] == f"{split}_labels.npy"]
        if len(imgs) != len(labels):
            raise ValueError(f"{snapshot.location}: split {split} must list as many label shards as image shards "
                             f"(observed {len(imgs)} and {len(labels)})")
        if imgs:
            out[split] = list(zip(imgs, labels))
    return out


def open_splits(snapshot) -> dict[str, ShardedSplit]:
    """Every split of a snapshot as a :class:`ShardedSplit`, read in place (remote shards via the cache)."""
    from retrain import snapshots

    splits = {}
    for split, pairs in split_entries(snapshot).items():
        paths = [snapshots.local_file(snapshot.file(i["path"]), i["sha256"]) for i, _ in pairs]
        labels = [np.load(snapshots.local_file(snapshot.file(l["path"]), l["sha256"]), allow_pickle=False)
                  for _, l in pairs]
        splits[split] = ShardedSplit(ShardedArray(paths), np.concatenate(labels) if len(labels) > 1 else labels[0])
    return splits


# ---------------------------------------------------------------------------------------------------------
# statistics for the quality gate


def _digests(images: np.ndarray) -> np.ndarray:
    """One 16-byte fingerprint per image (exact duplicates share it)."""
    flat = images.reshape(len(images), -1)
    # two independent 64-bit polynomial hashes of the pixels; collisions are negligible at these sizes
    weights = np.random.default_rng(12345).integers(1, 2**61 - 1, size=(flat.shape[1], 2), dtype=np.uint64)
    return (flat.astype(np.uint64) @ weights).view(np.dtype((np.void, 16))).ravel()


def _blocks(images) -> Iterator[np.ndarray]:
    if isinstance(images, ShardedArray):
        yield from images.blocks(STATS_CHUNK)
    else:
        for start in range(0, len(images), STATS_CHUNK):
            yield images[start:start + STATS_CHUNK]


def _pixel_stats(images) -> dict[str, np.ndarray]:
    """Per image: digest, min, max, mean, std; computed block by block (at most STATS_CHUNK images at once)."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("digest", "min", "max", "mean", "std")}
    for block in _blocks(images):
        flat = np.asarray(block).reshape(len(block), -1)
        parts["digest"].append(_digests(flat))
        pixels = flat.astype(np.float32)
        parts["min"].append(pixels.min(axis=1))
        parts["max"].append(pixels.max(axis=1))
        parts["mean"].append(pixels.mean(axis=1))
        parts["std"].append(pixels.std(axis=1))
    empty = {"digest": np.array([], dtype=np.dtype((np.void, 16)))}
    return {k: np.concatenate(v) if v else empty.get(k, np.array([], dtype=np.float32)) for k, v in parts.items()}


def stats_frame(splits: dict):
    """One row per image: split, label, shape, pixel statistics, duplicate and train/test-overlap flags,
    and the share of its class within its split (for class-balance bounds).

    ``splits`` maps a split to ``(images, labels)``: arrays, or a :class:`ShardedSplit` whose images are read
    block by block."""
    import pandas as pd

    frames = []
    stats = {split: _pixel_stats(images) for split, (images, _) in splits.items()}
    train_digests = stats["train"]["digest"] if "train" in stats else np.array([], dtype=np.dtype((np.void, 16)))
    for split, (images, labels) in splits.items():
        labels = np.asarray(labels)
        s = stats[split]
        digests = s["digest"]
        _, first_index = np.unique(digests, return_index=True)
        duplicate = np.ones(len(labels), dtype=bool)
        duplicate[first_index] = False  # the first of each group is not a duplicate
        if split == "test":
            seen = {bytes(d) for d in train_digests}
            overlap = np.fromiter((bytes(d) in seen for d in digests), dtype=bool, count=len(digests))
        else:
            overlap = np.zeros(len(labels), dtype=bool)
        class_share = np.bincount(labels, minlength=10) / max(len(labels), 1)
        frames.append(pd.DataFrame({
            "split": split,
            "label": labels.astype(np.int64),
            "height": np.full(len(labels), images.shape[1], dtype=np.int64),
            "width": np.full(len(labels), images.shape[2], dtype=np.int64),
            "channels": np.full(len(labels), images.shape[3] if images.ndim == 4 else 1, dtype=np.int64),
            "pixel_min": s["min"],
            "pixel_max": s["max"],
            "pixel_mean": s["mean"],
            "pixel_std": s["std"],
            "duplicate": duplicate.astype(np.float64),
            "in_train_and_test": overlap.astype(np.float64),
            "class_share": class_share[labels],
        }))
    return pd.concat(frames, ignore_index=True)
