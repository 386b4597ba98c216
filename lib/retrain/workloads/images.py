"""The image workload's steps (MNIST, CIFAR-10): gate -> train -> evaluate -> log_candidate.

One function per Airflow task; plain values in and out; files in the run's work folder (a local path or an
``s3://`` location), read and written only through :mod:`retrain.storage`: the tasks of one run may run on
different workers, so nothing is left on a worker's disk for the next task. Training resumes from the last
epoch's checkpoint in the work folder when a task is retried.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from retrain import config, quality, snapshots, storage, tracking
from retrain.events import CandidateEvent, check_data_event

WORKLOAD = "image_dl_training"
log = logging.getLogger(__name__)


def dataset_config(dataset: str, overrides: Mapping[str, Any] | None = None) -> config.ImageDataset:
    """The dataset's settings; ``overrides``: a manual run's loop settings (epochs, batch_size, lr, device...)."""
    base = config.dataset_settings(WORKLOAD, dataset)
    return base.model_copy(update={"loop": loop_config(dataset, overrides)}) if overrides else base


def loop_config(dataset: str, overrides: Mapping[str, Any] | None = None) -> config.LoopConfig:
    """The dataset's loop settings with a manual run's overrides (validated: unknown keys are an error)."""
    base = config.dataset_settings(WORKLOAD, dataset).loop.model_dump()
    try:
        return config.LoopConfig.model_validate(base | {k: v for k, v in (overrides or {}).items() if v is not None})
    except config.ValidationError as exc:
        raise config.ConfigError(f"{WORKLOAD} overrides for {dataset}: {exc}") from None


def _splits(event: Mapping[str, Any]):
    """The splits of the snapshot the event names, memory-mapped shard by shard (never concatenated)."""
    from retrain.data import images

    return images.open_splits(snapshots.from_uri(event["uri"]))


def resolve(dataset: str, events, cfg: config.ImageDataset, *, key: str | None = None,
            scheduled: bool = True) -> dict:
    """The data event of the snapshot to train: version ``key``, else the newest event, else the newest snapshot."""
    from retrain.workloads import resolve_snapshot

    return resolve_snapshot(dataset, events, key=key)


def gate(event: Mapping[str, Any], cfg: config.ImageDataset, work: str) -> dict:
    """Validate exactly the snapshot the event names (per-image statistics table)."""
    from retrain.data import images

    dataset = event["dataset"]
    extra = check_data_event(event, dataset)
    snapshot = snapshots.from_uri(extra["uri"])
    snapshots.verify(snapshot, extra["sha256"])
    splits = images.open_splits(snapshot)
    frame = images.stats_frame(splits)  # pixel statistics block by block
    report = quality.validate(dataset, frame, version=snapshot.version, report_dir=storage.join(work, "quality"))
    quality.enforce(report)
    check_sizes(dataset, snapshot.version, {name: len(split) for name, split in splits.items()}, cfg)
    return report.summary()


def min_train_images(cfg: config.ImageDataset) -> int:
    """The smallest train split the loop can use: one full batch of training images (``loop.batch_size``) once
    the validation rows (``validation_fraction``, at least one image) are set aside."""
    n = cfg.loop.batch_size + 1
    while n - _validation_rows(n, cfg.validation_fraction) < cfg.loop.batch_size:
        n += 1
    return n


def check_sizes(dataset: str, version: str, sizes: Mapping[str, int], cfg: config.ImageDataset) -> None:
    """A train split too small for the training config fails the gate, naming the minimum
    (:func:`min_train_images`). A test split below the promotion policy's ``min_eval_examples`` still trains;
    its candidate is rejected at promotion, with that reason."""
    from retrain.errors import DataQualityError

    minimum, observed = min_train_images(cfg), sizes.get("train", 0)
    if observed < minimum:
        raise DataQualityError(dataset, version, [{
            "expectation": "split_size", "column": "train",
            "rule": f"the train split must hold at least {minimum} images (one batch of {cfg.loop.batch_size}, "
                    f"loop.batch_size, after the validation share {cfg.validation_fraction:g})",
            "observed": f"{observed} images"}])


def build_model(dataset: str):
    """The untrained network of the model the catalog trains on ``dataset`` (ConfigError when it names none)."""
    from retrain import catalog

    try:
        entry = catalog.model_for_dataset(dataset)
    except KeyError as exc:
        raise config.ConfigError(f"{WORKLOAD}: {exc.args[0]} (rule: every image dataset has a catalog model "
                                 "with a factory)") from None
    if not entry.factory:
        raise config.ConfigError(f"{WORKLOAD}: catalog model {entry.name!r} of dataset {dataset!r} names no "
                                 "factory (rule: an image model is built by its catalog factory)")
    return catalog.load(entry.factory)()


def _train_val(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of a split of ``n`` images: indices, so neither subset is copied."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = _validation_rows(n, fraction)
    return order[n_val:], order[:n_val]


def _validation_rows(n: int, fraction: float) -> int:
    return max(1, int(round(n * fraction)))


def prepare(event: Mapping[str, Any], ds_cfg: config.ImageDataset, work: str) -> dict:
    """The training and validation rows of the snapshot's train split (indices; the shards stay memory-mapped
    and nothing is copied): the split ``train`` draws with the loop's seed."""
    splits = _splits(event)
    train_rows, val_rows = _train_val(len(splits["train"]), ds_cfg.validation_fraction, ds_cfg.loop.seed)
    return {"train_samples": int(len(train_rows)), "val_samples": int(len(val_rows)),
            "test_samples": int(len(splits["test"]))}


def train(event: Mapping[str, Any], ds_cfg: config.ImageDataset, work: str) -> dict:
    """Fit the dataset's CNN; checkpoints every epoch under ``work/checkpoints`` and resumes from there."""
    import torch

    from retrain.training import loop

    dataset = event["dataset"]
    cfg = ds_cfg.loop
    split = _splits(event)["train"]
    train_rows, val_rows = _train_val(len(split), ds_cfg.validation_fraction, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = build_model(dataset)
    history = loop.fit(model, loop.image_dataset(split.images, split.labels, rows=train_rows),
                       loop.image_dataset(split.images, split.labels, rows=val_rows), cfg,
                       checkpoint_dir=storage.join(work, "checkpoints"))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    storage.write_bytes(storage.join(work, "model.pt"), buffer.getvalue())
    device = loop.pick_device(cfg.device)
    summary = {"epochs_run": len(history), "history": history, "device": str(device),
               "train_samples": int(len(train_rows)), "val_samples": int(len(val_rows)), "loop": cfg.model_dump()}
    storage.write_text(storage.join(work, "train.json"), json.dumps(summary, default=str))
    return {k: v for k, v in summary.items() if k != "history"}


def _trained_model(dataset: str, work: str):
    import torch

    model = build_model(dataset)
    weights = io.BytesIO(storage.read_bytes(storage.join(work, "model.pt")))
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def evaluate(event: Mapping[str, Any], ds_cfg: config.ImageDataset, work: str) -> dict:
    """Test-split accuracy, macro-F1, per-class accuracy, confusion matrix, and the majority-class baseline."""
    from retrain.training import loop

    dataset = event["dataset"]
    classes = snapshots.from_uri(event["uri"]).manifest.get("classes") or [str(k) for k in range(10)]
    splits = _splits(event)
    test_x, test_y = splits["test"]
    model = _trained_model(dataset, work)
    result = loop.evaluate(model, loop.image_dataset(test_x, test_y), device=loop.pick_device("auto"))
    majority = int(np.bincount(splits["train"].labels, minlength=10).argmax())
    metrics = result.metrics("test_", classes) | {
        "baseline_majority_accuracy": float(np.mean(test_y == majority)),
        "test_examples": int(len(test_y)),
    }
    storage.write_text(storage.join(work, "evaluate.json"), json.dumps(metrics, indent=2))
    storage.write_bytes(storage.join(work, "confusion_matrix.png"),
                        loop.confusion_matrix_png(result.confusion, classes, f"{dataset}: test confusion matrix"))
    return metrics


def lineage_data(event: Mapping[str, Any]) -> dict:
    return dict(event)


def log_candidate(event: Mapping[str, Any], ds_cfg: config.ImageDataset, work: str, *,
                  coordinates: Mapping[str, Any], quality: Mapping[str, Any], tags: Mapping[str, str] | None = None,
                  description: str | None = None) -> dict:
    """Log the candidate run to MLflow and return the candidate asset event's extra."""
    from retrain.workloads import evaluation_metrics, log_candidate_run

    lineage = tracking.Lineage(**coordinates, data=lineage_data(event), quality=quality)
    dataset = lineage.data["dataset"]
    model_name = ds_cfg.model
    metrics = evaluation_metrics(work)
    data = lineage.data
    description = description or (
        f"**{model_name}** candidate trained by Airflow DAG `{lineage.dag_id}` run `{lineage.run_id}` on `{dataset}` "
        f"snapshot `{data.get('version')}` ({data.get('rows')} images), quality gate "
        f"**{lineage.quality.get('verdict', 'unknown')}**.\n\n| metric | CNN | majority class |\n|---|---|---|\n"
        f"| test accuracy | {metrics['test_accuracy']:.4f} | {metrics['baseline_majority_accuracy']:.4f} |\n"
        f"| test macro-F1 | {metrics['test_macro_f1']:.4f} | |\n"
    )
    return log_candidate_run(workload_name=WORKLOAD, dataset=dataset, model=model_name, lineage=lineage,
                             log_body=lambda: _log_body(ds_cfg, dataset, lineage, work, metrics),
                             description=description, tags=tags)


def _log_body(ds_cfg: config.ImageDataset, dataset: str, lineage: tracking.Lineage, work: str, metrics: dict) -> dict:
    import mlflow
    import numpy
    import torch
    from mlflow.models import infer_signature

    summary = json.loads(storage.read_text(storage.join(work, "train.json")))
    mlflow.log_params(tracking.flatten({"loop": summary["loop"], "dataset": dataset,
                                        "validation_fraction": ds_cfg.validation_fraction}))
    mlflow.log_params({"device": summary["device"], "train_samples": summary["train_samples"]})
    mlflow.log_metrics(metrics | {"epochs_run": summary["epochs_run"]})
    series: dict[str, list[float]] = {}
    for record in summary["history"]:
        for key in ("train_loss", "val_loss", "val_accuracy", "samples_per_s", "seconds"):
            if record.get(key) is not None:
                series.setdefault(key, []).append(float(record[key]))
    tracking.log_metric_history(series, prefix="epoch_")

    data = lineage.data
    digest = str(data.get("sha256", ""))[:20]
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    snapshot_input = MetaDataset(resolve_dataset_source(str(data["uri"])), name=f"{dataset}@{data.get('version')}",
                                 digest=digest)
    mlflow.log_input(snapshot_input, context="training")

    tracking.log_work_files(work, ["evaluate.json", "confusion_matrix.png", "train.json"], "evaluation")
    tracking.log_work_files(storage.join(work, "quality"), tracking.QUALITY_REPORTS, "quality", optional=True)

    model = _trained_model(dataset, work)
    splits = _splits(lineage.data)
    example = splits["test"].images[:2]
    example = (example[:, None] if example.ndim == 3 else example.transpose(0, 3, 1, 2)).astype(np.float32) / 255.0
    with torch.no_grad():
        output = model(torch.from_numpy(example)).numpy()
    info = mlflow.pytorch.log_model(
        model, name="model", signature=infer_signature(example, output), input_example=example,
        pip_requirements=[f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
                          f"numpy=={numpy.__version__}"],
    )
    return {"model_uri": info.model_uri, "metrics": metrics}


def evaluation_set(run) -> tuple[np.ndarray, np.ndarray]:
    """The candidate's held-out examples for promotion: the test split of the snapshot it was trained on."""
    event = CandidateEvent.read(json.loads(run.data.tags["retrain.candidate_event"])).extra()
    splits = _splits(event["data"])
    images, labels = splits["test"].arrays()  # the test split only, for the promotion's own scoring
    inputs = (images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)).astype(np.float32) / 255.0
    return inputs, labels.astype(np.int64)


def majority_baseline(run, n: int) -> np.ndarray:
    """The majority class of the training split of the snapshot the candidate was trained on, on every example."""
    event = CandidateEvent.read(json.loads(run.data.tags["retrain.candidate_event"])).extra()
    labels = np.asarray(_splits(event["data"])["train"].labels)
    return np.full(n, int(np.bincount(labels, minlength=10).argmax()), dtype=np.int64)
