"""Image snapshots as manifests over immutable shards: a drop writes only its own shards, snapshots read back
shard by shard, idempotent retries, older snapshots extended in place, and training straight from the maps."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from retrain import snapshots, storage
from retrain.data import images, mnist
from retrain.errors import ConfigError, SnapshotError
from retrain.ingest import images as ingest
from retrain.ingest import landing


def _land(tmp_path: Path, name: str, files: dict[str, bytes]) -> str:
    folder = tmp_path / "drops" / name
    folder.mkdir(parents=True)
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
    landing.land("mnist", str(folder))
    return name


def _train_only(n: int, seed: int, offset: int = 0) -> dict[str, bytes]:
    return {k: v for k, v in mnist.generate_mnist(n, 1, seed=seed, offset=offset).items() if k.startswith("train")}


def _files(root: Path) -> dict[str, tuple[int, int, int]]:
    """path -> (size, inode, mtime_ns) of every file under ``root``."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_ino, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def home(retrain_home):
    return retrain_home


@pytest.fixture
def curated(home) -> Path:
    return home / "data" / "curated" / "mnist"


def test_a_drop_writes_only_its_own_shards_a_manifest_and_the_head(home, curated, tmp_path):
    first = ingest.ingest_drop("mnist", _land(tmp_path, "one", mnist.generate_mnist(200, 50, seed=1)), "run1")
    before = _files(curated)
    second = ingest.ingest_drop("mnist", _land(tmp_path, "two", _train_only(120, seed=2)), "run2")
    after = _files(curated)

    assert (first.status, second.status) == ("ingested", "ingested")
    manifest = second.snapshot.manifest
    assert manifest["layout"] == "shards" and manifest["parent"] == first.snapshot.version
    assert manifest["sequence"] == 2 and manifest["splits"] == {"train": 320, "test": 50}
    added = [e for e in manifest["files"] if e["path"] not in first.snapshot.files]
    assert {(e["split"], e["kind"], e["rows"]) for e in added} == {("train", "images", 120), ("train", "labels", 120)}
    # every earlier shard is listed again, untouched: same path, same digest, same inode and mtime
    assert manifest["files"][:len(first.snapshot.files)] == first.snapshot.manifest["files"]
    for path in first.snapshot.files:
        assert after[path] == before[path]
    # bytes written by the second drop: its shards + one manifest + the head pointer, nothing else
    written = {p: v for p, v in after.items() if before.get(p) != v}
    version_folder = f"version={second.snapshot.version}"
    assert set(written) == {e["path"] for e in added} | {f"{version_folder}/manifest.json", "head.json"}
    assert sum(v[0] for v in written.values()) == (
        sum(e["bytes"] for e in added) + after[f"{version_folder}/manifest.json"][0] + after["head.json"][0])
    assert json.loads((curated / "head.json").read_text())["version"] == second.snapshot.version
    assert snapshots.head("mnist").version == second.snapshot.version
    # no data file inside the version folder: the manifest is all there is
    assert os.listdir(curated / version_folder) == ["manifest.json"]


def test_a_snapshot_reads_back_shard_by_shard_against_its_hashes(home, curated, tmp_path):
    ingest.ingest_drop("mnist", _land(tmp_path, "one", mnist.generate_mnist(60, 20, seed=1)), "run1")
    snap = ingest.ingest_drop("mnist", _land(tmp_path, "two", _train_only(30, seed=2)), "run2").snapshot
    assert snap.sha256 == snapshots.content_digest(snap.manifest["files"])
    for entry in snap.manifest["files"]:
        data = Path(snap.file(entry["path"])).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
        assert len(images.load_array(data)) == entry["rows"]
    snapshots.verify(snap, snap.sha256)
    splits = ingest.open_splits(snap)
    expected = mnist.read_files(mnist.generate_mnist(60, 20, seed=1))
    np.testing.assert_array_equal(splits["train"].images[:60], expected["train"][0])
    np.testing.assert_array_equal(splits["train"].images[60:], mnist.read_files(_train_only(30, seed=2))["train"][0])
    np.testing.assert_array_equal(splits["test"].labels, expected["test"][1])
    # a damaged shard is named by the check
    shard = Path(snap.file(snap.entries(split="train", kind="images")[-1]["path"]))
    shard.chmod(0o644)
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x01")
    with pytest.raises(SnapshotError, match="sha256 must match the manifest"):
        snapshots.verify(snap)


def test_the_same_drop_twice_is_a_duplicate_and_a_crash_before_commit_resumes(home, curated, tmp_path, monkeypatch):
    first = ingest.ingest_drop("mnist", _land(tmp_path, "one", mnist.generate_mnist(60, 20, seed=1)), "run1")
    files = _train_only(40, seed=2)
    real_commit, calls = snapshots.commit_growing, []

    def crash_once(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 1:
            raise OSError("worker killed between the shard writes and the commit")
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(snapshots, "commit_growing", crash_once)
    with pytest.raises(OSError):
        ingest.ingest_drop("mnist", _land(tmp_path, "two", files), "run2")
    assert snapshots.head("mnist").version == first.snapshot.version
    assert len(ingest.versions("mnist")) == 1
    shards_before = _files(curated / "shards")
    retried = ingest.ingest_drop("mnist", "two", "run2")  # the task's retry
    assert retried.status == "resumed" and retried.emits_event
    assert [s.version for s in ingest.versions("mnist")] == [first.snapshot.version, retried.snapshot.version]
    assert _files(curated / "shards") == shards_before, "the retry rewrote no shard"
    assert snapshots.head("mnist").version == retried.snapshot.version

    # landed again under another name, by another run: no new version, no event
    before = _files(curated)
    again = ingest.ingest_drop("mnist", _land(tmp_path, "two-again", files), "run3")
    assert again.status == "duplicate" and not again.emits_event
    assert again.snapshot.version == retried.snapshot.version
    assert _files(curated) == before
    # the first drop again, two snapshots later: found through drop_versions, not by reading the history
    old = ingest.ingest_drop("mnist", _land(tmp_path, "one-again", mnist.generate_mnist(60, 20, seed=1)), "run4")
    assert (old.status, old.snapshot.version) == ("duplicate", first.snapshot.version)
    # nothing landed is deleted: every drop is archived under the version that holds it
    archive = home / "data" / "archive" / "mnist"
    assert sorted(p.name for p in archive.glob("*/*")) == ["one", "one-again", "two", "two-again"]


def test_a_retry_after_the_commit_before_the_head_moved_resumes(home, tmp_path, monkeypatch):
    first = ingest.ingest_drop("mnist", _land(tmp_path, "one", mnist.generate_mnist(60, 20, seed=1)), "run1")
    real_write, crashed = snapshots.storage.write_text, []

    def crash_on_head(location, text):
        if location.endswith("head.json") and not crashed:
            crashed.append(location)
            raise OSError("killed before the head moved")
        return real_write(location, text)

    monkeypatch.setattr(snapshots.storage, "write_text", crash_on_head)
    with pytest.raises(OSError):
        ingest.ingest_drop("mnist", _land(tmp_path, "two", _train_only(40, seed=2)), "run2")
    assert snapshots.head("mnist").version == first.snapshot.version and len(ingest.versions("mnist")) == 2
    retried = ingest.ingest_drop("mnist", "two", "run2")
    assert retried.status == "resumed" and len(ingest.versions("mnist")) == 2
    assert snapshots.head("mnist").version == retried.snapshot.version


def test_the_image_shape_must_match_the_head(home, tmp_path):
    from retrain.data import cifar10

    ingest.ingest_drop("mnist", _land(tmp_path, "one", mnist.generate_mnist(30, 10, seed=1)), "run1")
    head = snapshots.head("mnist")
    # a head that says 32x32: the next 28x28 drop is refused from the head manifest alone
    manifest = dict(head.manifest) | {"image_shape": [32, 32, 3], "classes": cifar10.CLASSES}
    Path(head.location, "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SnapshotError, match=r"image shape \(28, 28\) \(train\) differs from snapshot"):
        ingest.ingest_drop("mnist", _land(tmp_path, "two", _train_only(10, seed=2)), "run2")


def _legacy_snapshot(dataset: str, drop_files: dict[str, bytes], drop: str, run_id: str) -> snapshots.Snapshot:
    """A snapshot as the ingest wrote them before shards: the whole arrays inside the version folder."""
    splits = mnist.read_files(drop_files)
    digest = ingest._drop_digest(drop_files)
    version = hashlib.sha256(f"\0{digest}".encode()).hexdigest()[:16]

    def write(folder: str) -> list[dict]:
        entries = []
        for split, pair in splits.items():
            for kind, array in zip(("images", "labels"), pair):
                data = images.array_bytes(array)
                Path(folder, f"{split}_{kind}.npy").write_bytes(data)
                entries.append({"path": f"{split}_{kind}.npy", "sha256": hashlib.sha256(data).hexdigest(),
                                "bytes": len(data), "rows": int(len(array))})
        return entries

    return snapshots.commit(
        dataset, version, write, rows=sum(len(y) for _, y in splits.values()), source_files=[],
        produced_by={"run_id": run_id},
        extra={"classes": mnist.CLASSES, "drops": [digest], "parent": None, "sequence": 1,
               "splits": {s: int(len(y)) for s, (_, y) in splits.items()}, "image_shape": [28, 28]},
    )


def test_a_drop_after_an_older_snapshot_lists_its_arrays_where_they_are(home, curated, tmp_path):
    legacy_files = mnist.generate_mnist(80, 20, seed=1)
    legacy = _legacy_snapshot("mnist", legacy_files, "old", "run0")
    assert not legacy.sharded and snapshots.head("mnist") is None
    before = _files(curated)

    result = ingest.ingest_drop("mnist", _land(tmp_path, "new", _train_only(30, seed=2)), "run1")
    assert result.status == "ingested"
    snap = result.snapshot
    assert snap.sharded and snap.manifest["parent"] == legacy.version and snap.manifest["sequence"] == 2
    assert snap.manifest["splits"] == {"train": 110, "test": 20}
    inherited = [e for e in snap.manifest["files"] if e["path"].startswith(f"version={legacy.version}/")]
    assert sorted(e["path"].split("/")[-1] for e in inherited) == sorted(ingest.ARRAYS)
    after = _files(curated)
    assert all(after[p] == v for p, v in before.items()), "the older snapshot's files are untouched"
    copied = sum(v[0] for p, v in after.items() if p not in before and p.startswith("shards/"))
    assert copied == sum(e["bytes"] for e in snap.manifest["files"] if e["path"].startswith("shards/"))
    assert copied < sum(e["bytes"] for e in legacy.manifest["files"]), "only the new drop was written"

    snapshots.verify(snap, snap.sha256)
    old, new = ingest.load_splits(legacy), ingest.load_splits(snap)
    np.testing.assert_array_equal(new["train"][0][:80], old["train"][0])
    np.testing.assert_array_equal(new["test"][1], old["test"][1])
    assert len(new["train"][0]) == 110
    # the older snapshot's own drop again: a duplicate, found from the new head
    again = ingest.ingest_drop("mnist", _land(tmp_path, "old-again", legacy_files), "run2")
    assert (again.status, again.snapshot.version) == ("duplicate", legacy.version)


# ---------------------------------------------------------------------------------------------------------
# the reader


@pytest.fixture
def shards(tmp_path) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, size=(n, 6, 5, 3), dtype=np.uint8) for n in (7, 1, 12, 5)]
    paths = []
    for k, array in enumerate(arrays):
        path = tmp_path / f"part-{k}.npy"
        np.save(path, array)
        paths.append(str(path))
    return paths, np.concatenate(arrays)


def test_a_sharded_array_reads_as_the_concatenation_would(shards):
    paths, whole = shards
    sharded = images.ShardedArray(paths)
    assert len(sharded) == len(whole) and sharded.shape == whole.shape and sharded.ndim == 4
    assert all(isinstance(p, np.memmap) for p in sharded.parts)
    rng = np.random.default_rng(1)
    for index in (rng.permutation(len(whole)), rng.integers(0, len(whole), 40), np.array([24, 0, 7, 7, -1]),
                  np.array([], dtype=np.int64)):
        got = sharded[index]
        np.testing.assert_array_equal(got, whole[index])
        assert got.flags.c_contiguous and not isinstance(got, np.memmap)
    for part in (slice(0, 25), slice(3, 9), slice(6, 8), slice(7, 8), slice(20, 99), slice(5, 5), slice(None, None, 3)):
        np.testing.assert_array_equal(sharded[part], whole[part])
    np.testing.assert_array_equal(sharded[8], whole[8])
    np.testing.assert_array_equal(np.asarray(sharded), whole)
    np.testing.assert_array_equal(np.concatenate(list(sharded.blocks(4))), whole)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(sharded))[[3, 20]], whole[[3, 20]])
    assert len(pickle.dumps(sharded)) < 1000, "pickles as paths, not as data"
    with pytest.raises(IndexError):
        sharded[np.array([25])]


def test_stats_frame_from_shards_equals_stats_frame_from_arrays(home, tmp_path):
    ingest.ingest_drop("mnist", _land(tmp_path, "one", mnist.generate_mnist(90, 40, seed=1)), "run1")
    # the second drop repeats two training images and one test image of the first (duplicate, overlap)
    snap = ingest.ingest_drop("mnist", _land(tmp_path, "two", mnist.generate_mnist(50, 1, seed=1)), "run2").snapshot
    sharded = ingest.open_splits(snap)
    assert len(sharded["train"].images.parts) == 2
    whole = ingest.load_splits(snap)
    import pandas as pd

    expected = images.stats_frame(whole)
    pd.testing.assert_frame_equal(images.stats_frame(sharded), expected)
    assert expected["duplicate"].sum() > 0


def test_remote_shards_are_cached_once_and_checked(tmp_path, monkeypatch):
    """A shard on an object store is copied to the local cache under its sha256 and mapped from there."""
    from retrain import storage

    data = images.array_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    digest = hashlib.sha256(data).hexdigest()
    reads = []

    class Remote:
        def __init__(self, payload):
            self.payload = payload

        def __enter__(self):
            import io

            reads.append(1)
            return io.BytesIO(self.payload)

        def __exit__(self, *exc):
            return False

    monkeypatch.setenv("RETRAIN_SHARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(storage, "open_stream", lambda location: Remote(data))
    local = snapshots.local_file("s3://bucket/curated/mnist/shards/x.npy", digest)
    assert Path(local) == tmp_path / "cache" / f"{digest}.npy" and Path(local).read_bytes() == data
    assert snapshots.local_file("s3://bucket/curated/mnist/shards/x.npy", digest) == local and len(reads) == 1
    monkeypatch.setattr(storage, "open_stream", lambda location: Remote(data[:-1] + b"\x07"))
    with pytest.raises(SnapshotError, match="sha256 must match"):
        snapshots.local_file("s3://bucket/curated/mnist/shards/y.npy", "0" * 64)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [f"{digest}.npy"], "no partial file left"


def test_the_shard_cache_keeps_to_its_bound_least_recently_used_first(monkeypatch, tmp_path):
    import io

    payloads = {f"s3://bucket/curated/power/month={m}.parquet": bytes([m]) * 1000 for m in (1, 2, 3, 4)}
    monkeypatch.setenv("RETRAIN_SHARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RETRAIN_SHARD_CACHE_BYTES", "2500")
    monkeypatch.setattr(snapshots, "SHARD_CACHE_GRACE_SECONDS", 0)
    monkeypatch.setattr(storage, "open_stream", lambda location: contextlib.nullcontext(io.BytesIO(payloads[location])))
    digest = {loc: hashlib.sha256(data).hexdigest() for loc, data in payloads.items()}
    first, second, third, fourth = payloads
    paths = {}
    for age, location in zip((300, 200), (first, second)):
        paths[location] = snapshots.local_file(location, digest[location])
        os.utime(paths[location], (time.time() - age, time.time() - age))
    assert snapshots.local_file(first, digest[first]) == paths[first]  # a hit: first is now the most recent
    paths[third] = snapshots.local_file(third, digest[third])  # 3000 bytes > 2500: the least recent goes
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert cached == sorted(Path(paths[loc]).name for loc in (first, third)), "second was used least recently"
    # a copy handed out within the grace period stays even over the bound (a step may not have opened it yet)
    monkeypatch.setattr(snapshots, "SHARD_CACHE_GRACE_SECONDS", 3600)
    snapshots.local_file(fourth, digest[fourth])
    assert len(list((tmp_path / "cache").iterdir())) == 3
    assert snapshots.prune_shard_cache(0, grace_seconds=0) and not list((tmp_path / "cache").iterdir())
    # a pruned copy is downloaded again, checked, when next needed
    assert Path(snapshots.local_file(second, digest[second])).read_bytes() == payloads[second]
    monkeypatch.setenv("RETRAIN_SHARD_CACHE_BYTES", "lots")
    with pytest.raises(ConfigError, match="RETRAIN_SHARD_CACHE_BYTES must be a number of bytes >= 0 \\(observed 'lots'\\)"):
        snapshots.shard_cache_bytes()


# ---------------------------------------------------------------------------------------------------------
# training from the maps


def test_fit_on_shards_by_index_matches_fit_on_the_copied_subset(home, tmp_path):
    from retrain.models.mnist_cnn import MnistCNN
    from retrain.training import loop
    from retrain.workloads.images import _train_val

    ingest.ingest_drop("mnist", _land(tmp_path, "one", mnist.generate_mnist(150, 60, seed=1)), "run1")
    snap = ingest.ingest_drop("mnist", _land(tmp_path, "two", _train_only(110, seed=2)), "run2").snapshot
    split = ingest.open_splits(snap)["train"]
    train_rows, val_rows = _train_val(len(split), 0.2, seed=3)
    assert len(train_rows) + len(val_rows) == 260 and not set(train_rows) & set(val_rows)
    cfg = loop.LoopConfig(epochs=2, batch_size=32, lr=2e-3, device="cpu", seed=3)

    def fit(train_ds, val_ds):
        torch.manual_seed(0)
        model = MnistCNN()
        history = loop.fit(model, train_ds, val_ds, cfg)
        return model, history

    sharded_ds = loop.image_dataset(split.images, split.labels, rows=train_rows)
    assert isinstance(sharded_ds, loop.ImageBatches) and len(sharded_ds) == len(train_rows)
    x, y = sharded_ds.batch(np.array([0, 5]))
    assert x.shape == (2, 1, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.int64
    whole_x, whole_y = split.arrays()
    a, history_a = fit(sharded_ds, loop.image_dataset(split.images, split.labels, rows=val_rows))
    b, history_b = fit(loop.image_dataset(whole_x[train_rows], whole_y[train_rows]),
                       loop.image_dataset(whole_x[val_rows], whole_y[val_rows]))
    assert [h["train_loss"] for h in history_a] == [h["train_loss"] for h in history_b]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    # evaluation straight from the maps: the same scores as from the arrays
    test = ingest.open_splits(snap)["test"]
    assert loop.evaluate(a, loop.image_dataset(test.images, test.labels)).accuracy == \
        loop.evaluate(a, loop.image_dataset(*test.arrays())).accuracy


def test_image_batches_in_dataloader_workers_give_the_same_batches(shards):
    from retrain.training import loop

    paths, whole = shards
    labels = np.arange(len(whole)) % 10
    ds = loop.image_dataset(images.ShardedArray(paths), labels)
    one = list(loop._Feed(ds, 8, torch.device("cpu"), 0)(shuffle_seed=5))
    two = list(loop._Feed(ds, 8, torch.device("cpu"), 2)(shuffle_seed=5))
    assert len(one) == len(two) == 4
    for (xa, ya), (xb, yb) in zip(one, two):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    order = torch.randperm(len(whole), generator=torch.Generator().manual_seed(5)).numpy()
    np.testing.assert_array_equal(one[0][0].permute(0, 2, 3, 1).numpy(), whole[order[:8]])


def test_the_workload_trains_and_evaluates_a_two_drop_snapshot(home, tmp_path):
    from retrain.workloads import images as workload

    ingest.ingest_drop("mnist", _land(tmp_path, "one", mnist.generate_mnist(300, 100, seed=1)), "run1")
    snap = ingest.ingest_drop("mnist", _land(tmp_path, "two", _train_only(200, seed=2, offset=300)), "run2").snapshot
    event = snap.event_extra()
    work = str(tmp_path / "work")
    cfg = workload.dataset_config("mnist", {"epochs": 1, "device": "cpu", "batch_size": 32})
    summary = workload.gate(event, cfg, work)
    assert summary
    trained = workload.train(event, cfg, work)
    assert trained["train_samples"] + trained["val_samples"] == 500 and trained["epochs_run"] == 1
    metrics = workload.evaluate(event, cfg, work)
    assert metrics["test_examples"] == 100 and 0.0 <= metrics["test_accuracy"] <= 1.0
