"""One short, generic training loop for the image CNNs: device choice, fit with checkpoint/resume, evaluation.

No Airflow and no MLflow here: ``fit`` reports each epoch through ``on_epoch_end`` and the caller logs it.

- Device: CUDA when present, else CPU with one thread per available core (:func:`pick_device`).
- Reproducible: every epoch reseeds torch from ``(seed, epoch)`` (dropout, shuffling, augmentation), so a
  run resumed from its checkpoint trains exactly as an uninterrupted one would; on CPU deterministic
  algorithms are switched on for the duration of the fit, so the same seed gives the same weights.
- On CUDA only: mixed precision (``torch.autocast`` float16 + ``GradScaler``), pinned host memory for
  ``DataLoader`` input, cuDNN autotuning.
- Data (see :func:`image_dataset`): in-memory uint8 images become a ``TensorDataset`` of ``[N, C, H, W]``
  and int64 labels, which takes the fast path: whole batches are gathered with one index operation (on the
  GPU the tensors are moved there once), instead of per-sample ``__getitem__`` and collation. Images
  memory-mapped across shards (:class:`retrain.data.images.ShardedArray`), or a subset of rows of any
  images, become an :class:`ImageBatches`: each batch is gathered from the maps on the host (one
  contiguous uint8 copy of just that batch; pinned, then moved, on CUDA), so a split is never loaded or
  copied whole; with ``num_workers`` the gathering moves into ``DataLoader`` workers. Both shuffle with the
  same ``torch.randperm``, so the same seed gives the same batches. Any other ``Dataset`` goes through a
  ``DataLoader``. uint8 images are scaled to [0, 1] per batch on the device; the models normalise their
  own input.
- Augmentation (``augment=True``, for CIFAR-10): random crop with 4 pixels of zero padding and a random
  horizontal flip, done batch-wise on the device with one gather.
- Checkpoint: ``checkpoint_dir/last.pt`` after every epoch (model, optimizer, scaler, epoch, best state,
  history, config); a fit that finds one resumes after its last epoch. ``checkpoint_dir`` is a local folder
  or an object-store location (``s3://…``): the checkpoint is serialised in memory and written through
  :mod:`retrain.storage` in one step (a temporary file renamed into place locally, one PUT on S3), so a
  retry on another worker resumes from the last epoch that reached the store. Early stopping watches the
  validation loss; the model ends with the best weights.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from retrain import storage
from retrain.config import LoopConfig  # noqa: F401  (re-exported: the loop's hyperparameters)
from retrain.errors import ConfigError, RetrainError

log = logging.getLogger(__name__)

CHECKPOINT = "last.pt"
CHECKPOINT_FORMAT = 1
# settings a resumed run must share with the run that wrote the checkpoint (epochs and patience may grow)
RESUME_KEYS = ("batch_size", "lr", "weight_decay", "seed", "augment")
AUGMENT_PAD = 4


class TrainingError(RetrainError):
    """Training cannot go on: the loss diverged, or the checkpoint belongs to another run or model."""


# ---------------------------------------------------------------------------------------------------------
# device


def available_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup v2 CPU quota when there is one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    return cores


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when available (or asked for), else CPU with ``torch.set_num_threads(available_cores())``."""
    if preference == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif preference == "cpu" or preference.startswith("cuda"):
        device = torch.device(preference)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {preference!r} requested but CUDA is not available on this machine (use 'auto' to fall back to CPU)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {preference!r} requested but only {torch.cuda.device_count()} CUDA device(s) are present")
    else:
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N (observed {preference!r})")
    if device.type == "cpu":
        torch.set_num_threads(available_cores())
    return device


# ---------------------------------------------------------------------------------------------------------
# data


def _check_images(images) -> None:
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"images must be uint8 [N, H, W] or [N, H, W, C], got {images.dtype} {images.shape}")


def _channels_first(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x)
    return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


class ImageBatches(Dataset):
    """uint8 images ``[N, H, W]`` / ``[N, H, W, C]`` (an array, a memory map, or a
    :class:`~retrain.data.images.ShardedArray`) and labels ``[N]``, optionally only the rows at ``rows`` (in
    that order), served a batch at a time: :meth:`batch` gathers just the batch's rows from the images
    (``take`` on a sharded array, fancy indexing otherwise) into uint8 ``[B, C, H, W]`` and int64 ``[B]``.
    ``ds[i]`` is one sample, ``ds[positions]`` a batch (what a ``DataLoader`` worker calls)."""

    def __init__(self, images, labels, rows: np.ndarray | None = None):
        _check_images(images)
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels) if self.rows is None else len(self.rows)

    def batch(self, positions: slice | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = positions if self.rows is None else self.rows[positions]
        x = np.ascontiguousarray(self.images[index])  # a slice or a gather: a copy of just these rows
        return _channels_first(x), torch.from_numpy(self.labels[index].copy())

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            x, y = self.batch(np.array([index], dtype=np.int64))
            return x[0], y[0]
        return self.batch(np.asarray(index, dtype=np.int64))


def image_dataset(images, labels: np.ndarray, rows: np.ndarray | None = None) -> TensorDataset | ImageBatches:
    """uint8 images ``[N, H, W]`` (grey) or ``[N, H, W, C]`` and labels ``[N]`` in the layout :func:`fit` and
    :func:`evaluate` take: a TensorDataset of uint8 ``[N, C, H, W]`` and int64 labels for a whole in-memory
    array; an :class:`ImageBatches` (gathered a batch at a time, nothing copied up front) for memory-mapped or
    sharded images, or for a subset ``rows`` of any images (a training/validation split by index)."""
    if rows is not None or not isinstance(images, np.ndarray) or isinstance(images, np.memmap):
        return ImageBatches(images, labels, rows)
    _check_images(images)
    x = torch.from_numpy(images if images.flags.writeable else images.copy())
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64).copy())
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    return TensorDataset(x.contiguous(), y)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (1 << 63)


class _Feed:
    """Batches ``(x, y)`` on the device, one pass over a dataset per call."""

    def __init__(self, ds: Dataset, batch_size: int, device: torch.device, num_workers: int):
        self.ds, self.batch_size, self.device, self.num_workers = ds, batch_size, device, num_workers
        self.fast = isinstance(ds, TensorDataset) and num_workers == 0
        self.batched = isinstance(ds, ImageBatches)
        if self.fast:
            # MNIST and CIFAR-10 are a few hundred MB at most as uint8: keep them where the model is.
            self.x, self.y = (t.to(device) for t in ds.tensors[:2])

    def __len__(self) -> int:
        return len(self.ds)

    def __call__(self, shuffle_seed: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = None if shuffle_seed is None else torch.Generator().manual_seed(shuffle_seed)
        if self.fast:
            n = len(self.y)
            order = None if generator is None else torch.randperm(n, generator=generator).to(self.device)
            for start in range(0, n, self.batch_size):
                if order is None:
                    yield self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
                else:
                    index = order[start : start + self.batch_size]
                    yield self.x.index_select(0, index), self.y.index_select(0, index)
            return
        if self.batched:
            yield from self._batches(generator)
            return
        loader = DataLoader(
            self.ds,
            batch_size=self.batch_size,
            shuffle=generator is not None,
            generator=generator,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _batches(self, generator: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """An :class:`ImageBatches` pass: the order the fast path would take, each batch gathered on the host."""
        n = len(self.ds)
        order = None if generator is None else torch.randperm(n, generator=generator).numpy()
        starts = range(0, n, self.batch_size)
        cuda = self.device.type == "cuda"
        if self.num_workers:  # each worker maps the shards itself (a ShardedArray pickles as its paths)
            order = np.arange(n) if order is None else order
            batches = DataLoader(self.ds, batch_size=None, sampler=[order[s : s + self.batch_size] for s in starts],
                                 num_workers=self.num_workers, pin_memory=cuda)
        else:
            batches = (self.ds.batch(slice(s, s + self.batch_size) if order is None else order[s : s + self.batch_size])
                       for s in starts)
        for x, y in batches:
            if cuda and not x.is_pinned():
                x, y = x.pin_memory(), y.pin_memory()
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = AUGMENT_PAD) -> torch.Tensor:
    """Random crop of the zero-padded batch back to its size, and a random horizontal flip, per image."""
    n, c, h, w = x.shape
    device = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), device=device, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), device=device, generator=generator)
    flip = torch.rand((n, 1), device=device, generator=generator) < 0.5
    cols = torch.arange(w, device=device)
    rows = dy + torch.arange(h, device=device)  # [n, h]
    cols = dx + torch.where(flip, w - 1 - cols, cols)  # [n, w]
    return padded[
        torch.arange(n, device=device)[:, None, None, None],
        torch.arange(c, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def _as_input(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


# ---------------------------------------------------------------------------------------------------------
# evaluation


@dataclass(frozen=True)
class Evaluation:
    """Scores of a model on a labelled set. ``confusion[t, p]`` counts images of class t predicted as p."""

    accuracy: float
    macro_f1: float
    per_class_accuracy: list[float]
    confusion: np.ndarray
    loss: float
    samples: int

    def metrics(self, prefix: str = "", class_names: list[str] | None = None) -> dict[str, float]:
        """Flat ``name -> value`` (for MLflow): accuracy, macro_f1, loss and ``accuracy_<class>``."""
        names = class_names or [str(k) for k in range(len(self.per_class_accuracy))]
        out = {f"{prefix}accuracy": self.accuracy, f"{prefix}macro_f1": self.macro_f1, f"{prefix}loss": self.loss}
        out.update({f"{prefix}accuracy_{name}": acc for name, acc in zip(names, self.per_class_accuracy)})
        return out


@torch.no_grad()
def _score(model: nn.Module, feed: _Feed, use_amp: bool) -> tuple[float, np.ndarray]:
    """(mean cross-entropy, confusion matrix) over one pass, synchronising with the device once."""
    model.eval()
    loss_sum = torch.zeros((), device=feed.device, dtype=torch.float64)
    confusion = None
    for x, y in feed(None):
        with _autocast(use_amp):
            logits = model(_as_input(x))
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        k = logits.shape[1]
        counts = torch.bincount(y * k + logits.argmax(1), minlength=k * k)
        confusion = counts if confusion is None else confusion + counts
    if confusion is None:
        raise ValueError("cannot score a model on an empty dataset")
    k = int(math.isqrt(confusion.numel()))
    return loss_sum.item() / len(feed), confusion.view(k, k).cpu().numpy()


def _summarise(loss: float, confusion: np.ndarray) -> Evaluation:
    confusion = confusion.astype(np.int64)
    true = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    hits = np.diag(confusion).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(true > 0, hits / true, np.nan)
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        f1 = np.where(hits > 0, 2 * precision * np.nan_to_num(recall) / (precision + np.nan_to_num(recall)), 0.0)
    seen = (true > 0) | (predicted > 0)  # as scikit-learn: classes in the truth or the predictions
    return Evaluation(
        accuracy=float(hits.sum() / confusion.sum()),
        macro_f1=float(f1[seen].mean()),
        per_class_accuracy=[float(r) for r in recall],
        confusion=confusion,
        loss=float(loss),
        samples=int(confusion.sum()),
    )


def evaluate(model: nn.Module, ds: Dataset, device: torch.device | str | None = None, batch_size: int = 1024) -> Evaluation:
    """Accuracy, macro-F1, per-class accuracy, confusion matrix and loss of ``model`` on ``ds``."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    loss, confusion = _score(model, _Feed(ds, batch_size, device, 0), use_amp=device.type == "cuda")
    return _summarise(loss, confusion)


def confusion_matrix_png(cm: np.ndarray, class_names: list[str], title: str = "Confusion matrix") -> bytes:
    """A PNG of the confusion matrix: cells shaded by the share of their true class, labelled with counts."""
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in worker threads

    cm = np.asarray(cm)
    k = len(class_names)
    shares = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(1.0 + 0.62 * k, 0.8 + 0.55 * k), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for t in range(k):
        for p in range(k):
            ax.text(p, t, str(int(cm[t, p])), ha="center", va="center", fontsize=7,
                    color="white" if shares[t, p] > 0.5 else "black")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------
# training


def _autocast(enabled: bool):
    return torch.autocast("cuda", dtype=torch.float16) if enabled else contextlib.nullcontext()


def _save_checkpoint(location: str, payload: dict) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    storage.write_bytes(location, buffer.getvalue())  # atomic: a reader sees the previous epoch's or this one's


def _load_checkpoint(path: str, cfg: LoopConfig) -> dict:
    data = storage.read_bytes(path)  # outside the try: a store that cannot be reached is not a damaged file
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign or damaged file: say which, do not guess
        raise TrainingError(
            f"{path}: checkpoint must load with torch.load(weights_only=True) "
            f"(observed {type(exc).__name__}: {exc}); delete it to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        observed = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise TrainingError(f"{path}: checkpoint format must be {CHECKPOINT_FORMAT} (observed {observed})")
    saved = state["config"]
    changed = {k: (saved.get(k), getattr(cfg, k)) for k in RESUME_KEYS if saved.get(k) != getattr(cfg, k)}
    if changed:
        detail = ", ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in changed.items())
        raise TrainingError(f"{path}: a resumed run must keep {', '.join(RESUME_KEYS)} (observed {detail}); use a new checkpoint folder")
    return state


def fit(
    model: nn.Module,
    train_ds: Dataset,
    val_ds: Dataset | None,
    cfg: LoopConfig,
    checkpoint_dir: str | os.PathLike | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train ``model`` in place and return the history, one dict per epoch (resumed epochs included):
    ``epoch, train_loss, val_loss, val_accuracy, seconds, samples_per_s, lr, best``.

    ``seconds`` covers training and validation; ``samples_per_s`` counts the training pass only.
    ``val_loss``/``val_accuracy`` are None without ``val_ds`` (and then nothing stops early). With
    ``checkpoint_dir`` (a local folder or a storage location such as ``s3://…``) the fit resumes from
    ``last.pt`` there and rewrites it after every epoch;
    ``on_epoch_end(record)`` runs after the checkpoint, for newly trained epochs only. On return the model
    holds the weights of the epoch with the lowest validation loss.
    """
    device = pick_device(cfg.device)
    on_cuda = device.type == "cuda"
    use_amp = on_cuda and cfg.amp
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    path = storage.join(os.fspath(checkpoint_dir), CHECKPOINT) if checkpoint_dir is not None else None
    history: list[dict] = []
    best = {"val_loss": math.inf, "epoch": 0, "state": None}
    stopped = False
    if path is not None and storage.exists(path):
        state = _load_checkpoint(path, cfg)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise TrainingError(f"{path}: checkpoint must hold this model's weights (observed {str(exc).splitlines()[0]})") from None
        optimizer.load_state_dict(state["optimizer"])
        if use_amp and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history, best, stopped = state["history"], state["best"], state["stopped_early"]
        log.info("resuming from %s after epoch %d of %d", path, state["epoch"], cfg.epochs)

    train_feed = _Feed(train_ds, cfg.batch_size, device, cfg.num_workers)
    val_feed = _Feed(val_ds, cfg.eval_batch_size, device, cfg.num_workers) if val_ds is not None else None
    if on_cuda:
        torch.backends.cudnn.benchmark = True
    restore = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    if not on_cuda:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        for epoch in range(len(history) + 1, cfg.epochs + 1):
            if stopped:
                break
            seed = _epoch_seed(cfg.seed, epoch)
            torch.manual_seed(seed)  # dropout draws; also seeds CUDA
            augment_rng = torch.Generator(device=device).manual_seed(seed) if cfg.augment else None
            started = time.perf_counter()
            model.train()
            loss_sum = torch.zeros((), device=device)
            for x, y in train_feed(shuffle_seed=seed):
                if augment_rng is not None:
                    x = crop_flip(x, augment_rng)
                with _autocast(use_amp):
                    loss = F.cross_entropy(model(_as_input(x)), y)
                optimizer.zero_grad(set_to_none=True)
                if use_amp:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                loss_sum += loss.detach() * y.shape[0]
            train_loss = loss_sum.item() / len(train_feed)  # the epoch's one synchronisation
            train_seconds = time.perf_counter() - started
            if not math.isfinite(train_loss):
                raise TrainingError(f"epoch {epoch}: training loss must stay finite (observed {train_loss}); lower lr or check the data")
            val_loss = val_accuracy = None
            if val_feed is not None:
                val_loss, confusion = _score(model, val_feed, use_amp)
                val_accuracy = float(np.trace(confusion) / confusion.sum())
            criterion = val_loss if val_loss is not None else train_loss
            improved = criterion < best["val_loss"]
            if improved:
                weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                best = {"val_loss": criterion, "epoch": epoch, "state": weights}
            elif cfg.patience is not None and val_feed is not None and epoch - best["epoch"] >= cfg.patience:
                stopped = True
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "seconds": time.perf_counter() - started,
                "samples_per_s": len(train_feed) / train_seconds,
                "lr": optimizer.param_groups[0]["lr"],
                "best": improved,
            }
            history.append(record)
            if path is not None:
                _save_checkpoint(path, {
                    "format": CHECKPOINT_FORMAT,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if use_amp else {},
                    "best": best,
                    "history": history,
                    "stopped_early": stopped,
                    "config": cfg.model_dump(),
                })
            log.info(
                "epoch %d/%d: train loss %.4f, val loss %s, val accuracy %s, %.0f samples/s, %.1f s%s",
                epoch, cfg.epochs, train_loss, f"{val_loss:.4f}" if val_loss is not None else "-",
                f"{val_accuracy:.4f}" if val_accuracy is not None else "-", record["samples_per_s"], record["seconds"],
                " (early stop)" if stopped else "",
            )
            if on_epoch_end is not None:
                on_epoch_end(record)
    finally:
        torch.use_deterministic_algorithms(restore[0], warn_only=restore[1])
    if best["state"] is not None and val_feed is not None:
        model.load_state_dict(best["state"])
    return history
