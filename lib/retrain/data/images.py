"""Image datasets as curated arrays, and the per-image statistics table their quality suites validate.

A curated image snapshot holds ``train_images.npy``, ``train_labels.npy``, ``test_images.npy`` and
``test_labels.npy`` (uint8; images ``[N, H, W]`` or ``[N, H, W, C]``): ``.npy`` is portable, memory-mappable
and never unpickled (``allow_pickle=False``).
"""

from __future__ import annotations

import io

import numpy as np

SPLITS = ("train", "test")


def array_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def load_array(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _digests(images: np.ndarray) -> np.ndarray:
    """One 16-byte fingerprint per image (exact duplicates share it)."""
    flat = images.reshape(len(images), -1)
    # two independent 64-bit polynomial hashes of the pixels; collisions are negligible at these sizes
    weights = np.random.default_rng(12345).integers(1, 2**61 - 1, size=(flat.shape[1], 2), dtype=np.uint64)
    return (flat.astype(np.uint64) @ weights).view(np.dtype((np.void, 16))).ravel()


def stats_frame(splits: dict[str, tuple[np.ndarray, np.ndarray]]):
    """One row per image: split, label, shape, pixel statistics, duplicate and train/test-overlap flags,
    and the share of its class within its split (for class-balance bounds)."""
    import pandas as pd

    frames = []
    train_digests = _digests(splits["train"][0]) if "train" in splits else np.array([], dtype=np.dtype((np.void, 16)))
    for split, (images, labels) in splits.items():
        flat = images.reshape(len(images), -1).astype(np.float32)
        digests = train_digests if split == "train" else _digests(images)
        _, first_index, counts = np.unique(digests, return_index=True, return_counts=True)
        duplicate = np.ones(len(images), dtype=bool)
        duplicate[first_index] = False  # the first of each group is not a duplicate
        if split == "test":
            seen = {bytes(d) for d in train_digests}
            overlap = np.fromiter((bytes(d) in seen for d in digests), dtype=bool, count=len(digests))
        else:
            overlap = np.zeros(len(images), dtype=bool)
        class_share = np.bincount(labels, minlength=10) / max(len(labels), 1)
        frames.append(pd.DataFrame({
            "split": split,
            "label": labels.astype(np.int64),
            "height": np.full(len(images), images.shape[1], dtype=np.int64),
            "width": np.full(len(images), images.shape[2], dtype=np.int64),
            "channels": np.full(len(images), images.shape[3] if images.ndim == 4 else 1, dtype=np.int64),
            "pixel_min": flat.min(axis=1),
            "pixel_max": flat.max(axis=1),
            "pixel_mean": flat.mean(axis=1),
            "pixel_std": flat.std(axis=1),
            "duplicate": duplicate.astype(np.float64),
            "in_train_and_test": overlap.astype(np.float64),
            "class_share": class_share[labels],
        }))
    return pd.concat(frames, ignore_index=True)
