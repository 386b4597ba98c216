"""The image CNNs and the generic training loop on tiny generated data, on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch.utils.data import Dataset

from retrain.data import cifar10, mnist
from retrain.errors import ConfigError
from retrain.models.cifar10_cnn import Cifar10CNN
from retrain.models.mnist_cnn import MnistCNN
from retrain.training import loop
from retrain.training.loop import LoopConfig, TrainingError


@pytest.fixture(scope="module")
def digits():
    """(train, val) TensorDatasets: 256 + 128 generated digits."""
    splits = mnist.read_files(mnist.generate_mnist(256, 128, seed=11))
    return loop.image_dataset(*splits["train"]), loop.image_dataset(*splits["test"])


def _model(seed: int = 0) -> MnistCNN:
    torch.manual_seed(seed)
    return MnistCNN()


def _cfg(**overrides) -> LoopConfig:
    return LoopConfig(**{"epochs": 2, "batch_size": 32, "lr": 2e-3, "device": "cpu", **overrides})


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("model_class, shape", [(MnistCNN, (1, 28, 28)), (Cifar10CNN, (3, 32, 32))])
def test_model_overfits_one_batch(model_class, shape):
    torch.manual_seed(0)
    model = model_class()
    x = torch.rand(32, *shape)
    y = torch.arange(32) % 10
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(50):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    final = F.cross_entropy(model(x), y).item()
    assert final < 0.1 * losses[0], (losses[0], final)


def test_pick_device_is_cpu_here():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert loop.pick_device().type == "cpu"
    assert torch.get_num_threads() == loop.available_cores()
    with pytest.raises(ConfigError, match="CUDA is not available"):
        loop.pick_device("cuda")


def test_config_refuses_unknown_keys_and_bad_devices():
    with pytest.raises(ValidationError, match="extra"):
        LoopConfig(epochs=1, learning_rate=0.1)
    with pytest.raises(ValidationError, match=r"device\n  String should match pattern"):
        LoopConfig(device="gpu")
    with pytest.raises(ValidationError):
        _cfg().epochs = 5  # frozen


def test_fit_learns_and_reports_each_epoch(digits):
    train, val = digits
    seen = []
    model = _model()
    history = loop.fit(model, train, val, _cfg(epochs=3), on_epoch_end=seen.append)
    assert [h["epoch"] for h in history] == [1, 2, 3] and seen == history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(h["samples_per_s"] > 0 and h["seconds"] > 0 for h in history)
    result = loop.evaluate(model, val)
    assert result.samples == 128 and result.confusion.sum() == 128
    assert result.accuracy > 0.5  # 3 epochs on 256 digits: well above the 10 % of chance
    assert result.accuracy == pytest.approx(np.trace(result.confusion) / 128)


def test_same_seed_gives_identical_weights(digits):
    train, val = digits
    a, b, c = _model(), _model(), _model()
    loop.fit(a, train, val, _cfg())
    loop.fit(b, train, val, _cfg())
    loop.fit(c, train, val, _cfg(seed=1))
    assert _same_weights(a, b)
    assert not _same_weights(a, c)


def test_resume_trains_only_the_missing_epoch(digits, tmp_path):
    train, val = digits
    first = loop.fit(_model(), train, val, _cfg(epochs=2), checkpoint_dir=tmp_path)
    assert (tmp_path / "last.pt").exists() and not list(tmp_path.glob(".*.tmp"))

    new_epochs = []
    resumed_model = _model(seed=5)  # its own initial weights are replaced by the checkpoint's
    resumed = loop.fit(resumed_model, train, val, _cfg(epochs=3), checkpoint_dir=tmp_path, on_epoch_end=new_epochs.append)
    assert [h["epoch"] for h in resumed] == [1, 2, 3]
    assert [h["epoch"] for h in new_epochs] == [3]  # only one epoch trained
    assert resumed[:2] == first

    # Resuming reproduces an uninterrupted run exactly: optimizer state and per-epoch seeds carry over.
    straight = _model()
    loop.fit(straight, train, val, _cfg(epochs=3))
    assert _same_weights(resumed_model, straight)

    again = []
    assert len(loop.fit(_model(), train, val, _cfg(epochs=3), checkpoint_dir=tmp_path, on_epoch_end=again.append)) == 3
    assert again == []  # nothing left to train


def test_resume_refuses_a_checkpoint_from_other_settings(digits, tmp_path):
    train, val = digits
    loop.fit(_model(), train, val, _cfg(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(TrainingError, match="lr: checkpoint 0.002, now 0.01"):
        loop.fit(_model(), train, val, _cfg(epochs=2, lr=1e-2), checkpoint_dir=tmp_path)
    torch.manual_seed(0)
    with pytest.raises(TrainingError, match="this model's weights"):
        loop.fit(Cifar10CNN(), train, val, _cfg(epochs=2), checkpoint_dir=tmp_path)


def test_damaged_checkpoint_is_named(digits, tmp_path):
    train, val = digits
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="last.pt: checkpoint must load"):
        loop.fit(_model(), train, val, _cfg(epochs=1), checkpoint_dir=tmp_path)


def test_an_unreachable_store_is_not_called_a_damaged_checkpoint(digits, tmp_path, monkeypatch):
    """Checkpoints go through retrain.storage: a read that fails (S3 down) stays a retryable error."""
    from retrain import storage

    train, val = digits
    (tmp_path / "last.pt").write_bytes(b"whatever is there")
    monkeypatch.setattr(storage, "read_bytes", lambda location: (_ for _ in ()).throw(ConnectionError("store down")))
    with pytest.raises(ConnectionError, match="store down"):
        loop.fit(_model(), train, val, _cfg(epochs=1), checkpoint_dir=str(tmp_path))


def test_early_stopping_when_val_loss_stops_improving(digits):
    train, val = digits
    # lr so small the weights cannot change in float32: the val loss never improves after epoch 1
    history = loop.fit(_model(), train, val, _cfg(epochs=6, lr=1e-12, patience=2))
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert [h["best"] for h in history] == [True, False, False]


class _ListDataset(Dataset):
    """A dataset that is not a TensorDataset: takes the DataLoader path."""

    def __init__(self, ds):
        self.x, self.y = ds.tensors

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_fit_accepts_any_dataset(digits):
    train, val = digits
    history = loop.fit(_model(), _ListDataset(train), _ListDataset(val), _cfg(epochs=1))
    assert history[0]["val_accuracy"] is not None


def test_crop_flip_takes_a_window_of_the_padded_image():
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    out = loop.crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape and out.dtype == torch.uint8
    again = loop.crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert torch.equal(out, again)
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        windows = [
            w
            for dy in range(5)
            for dx in range(5)
            for w in (padded[i, :, dy : dy + 8, dx : dx + 8], padded[i, :, dy : dy + 8, dx : dx + 8].flip(-1))
        ]
        assert any(torch.equal(out[i], w) for w in windows)


def test_cifar_training_with_augmentation_runs(tmp_path):
    names, splits = cifar10.read_files(cifar10.generate_cifar10(40, n_batches=1, n_test=20, seed=2))
    torch.manual_seed(0)
    model = Cifar10CNN()
    history = loop.fit(model, loop.image_dataset(*splits["train"]), loop.image_dataset(*splits["test"]),
                       _cfg(epochs=1, augment=True), checkpoint_dir=tmp_path)
    assert len(history) == 1 and np.isfinite(history[0]["val_loss"])


def test_metrics_from_a_known_confusion_matrix():
    cm = np.array([[3, 1, 0, 0], [0, 2, 2, 0], [0, 0, 0, 0], [0, 0, 0, 0]])  # 2 only predicted, 3 absent
    result = loop._summarise(0.5, cm)
    assert result.accuracy == pytest.approx(5 / 8)
    assert result.per_class_accuracy[:3] == pytest.approx([0.75, 0.5, float("nan")], nan_ok=True)
    f1_0 = 2 * 1.0 * 0.75 / 1.75
    f1_1 = 2 * (2 / 3) * 0.5 / (2 / 3 + 0.5)
    # as scikit-learn's f1_score(average="macro"): over classes in the truth or the predictions (not class 3)
    assert result.macro_f1 == pytest.approx((f1_0 + f1_1 + 0.0) / 3)
    metrics = result.metrics(prefix="test_", class_names=["a", "b", "c", "d"])
    assert metrics["test_accuracy_a"] == pytest.approx(0.75) and "test_macro_f1" in metrics


def test_confusion_matrix_png():
    png = loop.confusion_matrix_png(np.eye(10, dtype=int) * 7, cifar10.CLASSES)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_with_amp_and_resume(digits, tmp_path):
    train, val = digits
    model = _model()
    first = loop.fit(model, train, val, _cfg(epochs=2, device="cuda", augment=True), checkpoint_dir=tmp_path)
    assert next(model.parameters()).device.type == "cuda"
    resumed = loop.fit(_model(), train, val, _cfg(epochs=3, device="cuda", augment=True), checkpoint_dir=tmp_path)
    assert len(resumed) == 3 and resumed[:2] == first
    assert torch.load(tmp_path / "last.pt", weights_only=True)["scaler"]  # the GradScaler's state is kept
    result = loop.evaluate(model, val)
    assert result.samples == 128 and 0.0 <= result.accuracy <= 1.0
