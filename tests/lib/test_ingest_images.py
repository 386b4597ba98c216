"""Image drops: cumulative snapshots, idempotency, and bad drops quarantined with a reason."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from retrain.data import cifar10, images, mnist
from retrain.errors import DataFormatError
from retrain.ingest import images as ingest
from retrain.ingest import landing


def _drop(tmp_path, name: str, files: dict[str, bytes]) -> str:
    folder = tmp_path / name
    folder.mkdir()
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
    return str(folder)


@pytest.fixture
def home(retrain_home):
    return retrain_home


def test_second_drop_yields_a_version_that_includes_the_first(home, tmp_path):
    landing.land("mnist", _drop(tmp_path, "one", mnist.generate_mnist(200, 50, seed=1)))
    first = ingest.ingest_drop("mnist", "one", "run1")
    extra = mnist.generate_mnist(120, 10, seed=2)
    landing.land("mnist", _drop(tmp_path, "two", {k: v for k, v in extra.items() if k.startswith("train")}))
    second = ingest.ingest_drop("mnist", "two", "run2")
    assert (first.status, second.status) == ("ingested", "ingested")
    assert second.snapshot.manifest["parent"] == first.snapshot.version
    assert second.snapshot.manifest["splits"] == {"train": 320, "test": 50}
    splits = ingest.load_splits(second.snapshot)
    np.testing.assert_array_equal(splits["train"][0][:200], ingest.load_splits(first.snapshot)["train"][0])
    # the same drop again: no new version, no event
    landing.land("mnist", _drop(tmp_path, "two-again", {k: v for k, v in extra.items() if k.startswith("train")}))
    assert ingest.ingest_drop("mnist", "two-again", "run3").status == "duplicate"
    assert len(ingest.versions("mnist")) == 2


def test_cifar_drop_and_stats_frame(home, tmp_path):
    landing.land("cifar10", _drop(tmp_path, "c1", cifar10.generate_cifar10(30, 2, 40, seed=1)))
    result = ingest.ingest_drop("cifar10", "c1", "run1")
    assert result.snapshot.manifest["classes"] == cifar10.CLASSES
    frame = images.stats_frame(ingest.load_splits(result.snapshot))
    assert set(frame["channels"]) == {3} and len(frame) == 100


@pytest.mark.parametrize("case", ["only_test", "mixed", "pickle", "first_without_test"])
def test_bad_drops_are_quarantined_with_a_reason(home, tmp_path, case):
    files = mnist.generate_mnist(50, 20, seed=1)
    dataset = "mnist"
    if case == "only_test":
        files = {k: v for k, v in files.items() if k.startswith("t10k")}
        rule = "a drop must include a training split"
    elif case == "mixed":
        files |= {"data_batch_1.bin": cifar10.write_batch(*cifar10.generate_images(5, seed=1))}
        rule = "a drop holds one dataset's files (mnist)"
    elif case == "pickle":
        dataset = "cifar10"
        files = {"data_batch_1.bin": pickle.dumps({"data": [1, 2, 3]}, protocol=2), "batches.meta.txt": cifar10.write_meta().encode()}
        rule = "binary expected, got a Python pickle"
    else:
        files = {k: v for k, v in files.items() if k.startswith("train")}
        rule = "the first drop of a dataset must include a test split"
    landing.land(dataset, _drop(tmp_path, "bad", files))
    with pytest.raises(DataFormatError) as error:
        ingest.ingest_drop(dataset, "bad", "run1")
    assert rule in str(error.value)
    reason = json.loads((home / "data" / "quarantine" / dataset / "bad.reason.json").read_text())
    assert rule in reason["rule"]
    assert sorted(p.name for p in (home / "data" / "quarantine" / dataset / "bad").iterdir()) == sorted(files)
    assert ingest.versions(dataset) == []


def test_gate_fails_an_all_black_batch_and_train_test_overlap():
    from retrain import quality
    from retrain.errors import DataQualityError

    splits = mnist.read_files(mnist.generate_mnist(300, 100, seed=4))
    good = quality.validate("mnist", images.stats_frame(splits), version="good")
    assert good.success, good.failures
    train_x, train_y = splits["train"]
    black = train_x.copy()
    black[:50] = 0  # an all-black batch
    test_x, test_y = splits["test"]
    leaked = test_x.copy()
    leaked[:5] = train_x[100:105]  # test images also in training
    report = quality.validate("mnist", images.stats_frame({"train": (black, train_y), "test": (leaked, test_y)}), version="bad")
    with pytest.raises(DataQualityError) as error:
        quality.enforce(report)
    rules = {f["column"]: f for f in error.value.failures}
    assert float(rules["pixel_mean"]["observed"]) == 0.0 and "no blank image" in rules["pixel_mean"]["rule"]
    assert "pixel_std" in rules and "in_train_and_test" in rules
