"""The MNIST (IDX) and CIFAR-10 (binary) readers and the sample generators, as a user of the files sees them."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

from retrain.data import cifar10, mnist
from retrain.errors import DataFormatError

TRAIN_IMAGES, TRAIN_LABELS = mnist.FILES["train"]


@pytest.fixture(scope="module")
def mnist_files() -> dict[str, bytes]:
    return mnist.generate_mnist(40, 20, seed=3)


@pytest.fixture(scope="module")
def cifar_files() -> dict[str, bytes]:
    return cifar10.generate_cifar10(20, n_batches=2, n_test=10, seed=3)


# --------------------------------------------------------------------------------------------------------
# MNIST


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_generated_files_read_back(gz):
    files = mnist.generate_mnist(40, 20, seed=3, gz=gz)
    suffix = ".gz" if gz else ""
    assert set(files) == {name + suffix for pair in mnist.FILES.values() for name in pair}
    if gz:
        assert all(data[:2] == b"\x1f\x8b" for data in files.values())
    splits = mnist.read_files(files)
    images, labels = splits["train"]
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (40,) and labels.max() <= 9
    assert splits["test"][0].shape == (20, 28, 28)
    expected_images, expected_labels = mnist.generate_images(40, seed=3, split="train")
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
    # white digits on a black background, as in MNIST
    assert np.median(images) == 0 and images.max(axis=(1, 2)).min() > 200


def test_mnist_header_is_the_real_idx_layout(mnist_files):
    data = mnist_files[TRAIN_IMAGES]
    assert struct.unpack(">IIII", data[:16]) == (0x00000803, 40, 28, 28)
    assert len(data) == 16 + 40 * 28 * 28
    assert struct.unpack(">II", mnist_files[TRAIN_LABELS][:8]) == (0x00000801, 40)


def test_mnist_seed_and_offset_give_new_images():
    first, _ = mnist.generate_images(6, seed=1)
    again, _ = mnist.generate_images(6, seed=1)
    other_seed, _ = mnist.generate_images(6, seed=2)
    continued, _ = mnist.generate_images(3, seed=1, offset=3)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other_seed)
    np.testing.assert_array_equal(continued, first[3:])  # offset continues the same stream
    assert mnist.generate_mnist(5, 5, seed=1) != mnist.generate_mnist(5, 5, seed=1, offset=5)


def test_mnist_wrong_magic(mnist_files):
    data = b"\x00\x00\x08\x04" + mnist_files[TRAIN_IMAGES][4:]
    with pytest.raises(DataFormatError) as info:
        mnist.read_split(data, mnist_files[TRAIN_LABELS])
    assert info.value.file == TRAIN_IMAGES
    assert "0x00000803" in info.value.rule and info.value.observed == "0x00000804"


def test_mnist_labels_file_where_images_expected(mnist_files):
    with pytest.raises(DataFormatError, match="images magic number must be 0x00000803.*0x00000801"):
        mnist.read_split(mnist_files[TRAIN_LABELS], mnist_files[TRAIN_LABELS])


def test_mnist_image_count_must_equal_label_count(mnist_files):
    other = mnist.generate_mnist(30, 1, seed=3)
    with pytest.raises(DataFormatError) as info:
        mnist.read_split(mnist_files[TRAIN_IMAGES], other[TRAIN_LABELS])
    assert TRAIN_IMAGES in info.value.file and TRAIN_LABELS in info.value.file
    assert info.value.rule == "image count must equal label count"
    assert info.value.observed == "40 images, 30 labels"


@pytest.mark.parametrize("cut", [1, 784, 40 * 784 - 1])
def test_mnist_truncated_file(mnist_files, cut):
    data = mnist_files[TRAIN_IMAGES][:-cut]
    with pytest.raises(DataFormatError) as info:
        mnist.read_idx(data, TRAIN_IMAGES)
    assert "31376" in info.value.rule  # 16 + 40 x 28 x 28
    assert info.value.observed == f"{len(data)} bytes (truncated)"


def test_mnist_trailing_bytes(mnist_files):
    with pytest.raises(DataFormatError, match="trailing bytes"):
        mnist.read_idx(mnist_files[TRAIN_LABELS] + b"\x00", TRAIN_LABELS)


def test_mnist_truncated_header():
    with pytest.raises(DataFormatError, match="header must hold 3 dimension sizes"):
        mnist.read_idx(b"\x00\x00\x08\x03\x00\x00\x00\x05", TRAIN_IMAGES)


def test_mnist_image_size_must_be_28x28():
    data = struct.pack(">IIII", 0x803, 1, 32, 32) + bytes(32 * 32)
    with pytest.raises(DataFormatError, match="images must be 28x28 .observed: 32x32"):
        mnist.read_idx(data, TRAIN_IMAGES)


def test_mnist_corrupt_gzip(mnist_files):
    packed = bytearray(gzip.compress(mnist_files[TRAIN_IMAGES]))
    packed[len(packed) // 2 : len(packed) // 2 + 16] = b"\xff" * 16
    with pytest.raises(DataFormatError) as info:
        mnist.read_idx(bytes(packed), TRAIN_IMAGES + ".gz")
    assert info.value.file == TRAIN_IMAGES + ".gz" and "gzip" in info.value.rule


def test_mnist_truncated_gzip(mnist_files):
    packed = gzip.compress(mnist_files[TRAIN_IMAGES])
    with pytest.raises(DataFormatError, match="gzip stream must be complete"):
        mnist.read_idx(packed[: len(packed) // 2], TRAIN_IMAGES + ".gz")


def test_mnist_gzip_is_detected_by_content_not_name(mnist_files):
    packed = gzip.compress(mnist_files[TRAIN_LABELS])
    np.testing.assert_array_equal(mnist.read_idx(packed, TRAIN_LABELS), mnist.read_idx(mnist_files[TRAIN_LABELS], TRAIN_LABELS))
    plain_named_gz = mnist.read_idx(mnist_files[TRAIN_LABELS], TRAIN_LABELS + ".gz")
    assert plain_named_gz.shape == (40,)


def test_mnist_label_outside_0_9(mnist_files):
    labels = bytearray(mnist_files[TRAIN_LABELS])
    labels[8 + 7] = 10
    with pytest.raises(DataFormatError) as info:
        mnist.read_split(mnist_files[TRAIN_IMAGES], bytes(labels))
    assert info.value.file == TRAIN_LABELS and info.value.observed == "label 10 at index 7"


def test_mnist_split_needs_both_files(mnist_files):
    with pytest.raises(DataFormatError, match="needs both its images and its labels"):
        mnist.read_files({TRAIN_IMAGES: mnist_files[TRAIN_IMAGES]})


# --------------------------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar_generated_files_read_back(cifar_files):
    assert set(cifar_files) == {"data_batch_1.bin", "data_batch_2.bin", "test_batch.bin", "batches.meta.txt"}
    assert all(len(cifar_files[f]) == 20 * 3073 for f in ("data_batch_1.bin", "data_batch_2.bin"))
    names, splits = cifar10.read_files(cifar_files)
    assert names == cifar10.CLASSES
    images, labels = splits["train"]
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [4] * 10  # balanced, like the real batches
    assert splits["test"][0].shape == (10, 32, 32, 3)
    assert cifar10.generate_cifar10(5, 1, 5, seed=4) != cifar10.generate_cifar10(5, 1, 5, seed=5)


def test_cifar_record_layout_is_label_then_r_g_b_planes():
    red = np.arange(1024, dtype=np.uint16).reshape(32, 32) % 251
    record = bytes([7]) + red.astype(np.uint8).tobytes() + bytes([2]) * 1024 + bytes([3]) * 1024
    images, labels = cifar10.read_batch(record, "data_batch_1.bin")
    assert labels.tolist() == [7]
    np.testing.assert_array_equal(images[0, :, :, 0], red)  # row-major red plane
    assert (images[0, :, :, 1] == 2).all() and (images[0, :, :, 2] == 3).all()
    np.testing.assert_array_equal(np.frombuffer(cifar10.write_batch(images, labels), np.uint8), np.frombuffer(record, np.uint8))


@pytest.mark.parametrize("delta", [-1, 1, -3072])
def test_cifar_length_must_be_a_multiple_of_3073(cifar_files, delta):
    data = cifar_files["data_batch_1.bin"]
    data = data[:delta] if delta < 0 else data + b"\x00" * delta
    with pytest.raises(DataFormatError) as info:
        cifar10.read_batch(data, "data_batch_1.bin")
    assert info.value.file == "data_batch_1.bin" and "3073" in info.value.rule
    assert info.value.observed.startswith(f"{len(data)} bytes")


def test_cifar_label_outside_0_9(cifar_files):
    data = bytearray(cifar_files["test_batch.bin"])
    data[3 * 3073] = 10
    with pytest.raises(DataFormatError) as info:
        cifar10.read_batch(bytes(data), "test_batch.bin")
    assert info.value.observed == "label 10 in record 3"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_pickle_is_refused_never_loaded(protocol):
    # A python-version batch (a dict holding a numpy array) whose module reference is renamed: unpickling it
    # would fail with ModuleNotFoundError instead of the reader's own error.
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [1, 2], b"data": np.zeros((2, 3072), np.uint8)}
    payload = pickle.dumps(batch, protocol=protocol).replace(b"numpy", b"nompy")
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(payload)
    with pytest.raises(DataFormatError) as info:
        cifar10.read_batch(payload, "data_batch_1")
    assert "binary expected, got a Python pickle" in info.value.rule
    assert info.value.observed.startswith(f"pickle protocol {protocol}")


def test_cifar_meta_needs_ten_distinct_names():
    assert cifar10.read_meta("\n".join(cifar10.CLASSES) + "\n\n") == cifar10.CLASSES
    with pytest.raises(DataFormatError, match="must list 10 class names"):
        cifar10.read_meta("airplane\nautomobile\n")
    with pytest.raises(DataFormatError, match="distinct"):
        cifar10.read_meta("cat\n" * 10)


def test_cifar_unknown_file_name(cifar_files):
    with pytest.raises(DataFormatError, match="file name must be one of"):
        cifar10.read_files({**cifar_files, "data_batch_1": b""})
