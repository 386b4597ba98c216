"""The image workload with an ``s3://`` work folder (moto server): the tasks of one training run share files
only through the object store, as Celery workers on different hosts must.

Each step runs as the DAG task calls it, on a "fresh worker": its own empty working directory and temporary
folder, removed when the step ends, so a step that left a file on local disk for the next one fails.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrain import storage
from retrain.settings import get_settings

pytestmark = pytest.mark.integration

DAG_ID = "image_dl_training"
TRAIN, TEST = 600, 200


@contextlib.contextmanager
def fresh_worker(root: Path, name: str) -> Iterator[Path]:
    """One task on a new host: an empty scratch as cwd and TMPDIR, no cached clients; the scratch goes after."""
    from retrain import settings

    scratch = root / "workers" / name
    scratch.mkdir(parents=True)
    before, cwd = tempfile.tempdir, os.getcwd()
    os.chdir(scratch)
    tempfile.tempdir = str(scratch)
    settings.reset_settings()
    storage.reset_connections()
    try:
        yield scratch
    finally:
        tempfile.tempdir = before
        os.chdir(cwd)
        shutil.rmtree(scratch)


@pytest.fixture
def s3_images(s3_env, tmp_path, monkeypatch):
    """The S3 profile with a local MLflow (SQLite and artifacts in tmp) and a RETRAIN_HOME of its own."""
    from retrain import settings

    home = tmp_path / "home"
    monkeypatch.setenv("RETRAIN_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("RETRAIN_MLFLOW_ARTIFACT_ROOT", (tmp_path / "mlartifacts").as_uri())
    settings.reset_settings()
    return s3_env


@pytest.fixture
def mnist_event(s3_images, tmp_path) -> dict:
    """A tiny MNIST drop landed on S3 and ingested: the ``mnist`` asset event's extra."""
    from retrain.data import mnist
    from retrain.ingest import images, landing

    drop = tmp_path / "drop-1"
    drop.mkdir()
    for name, data in mnist.generate_mnist(TRAIN, TEST, seed=3, gz=True).items():
        (drop / name).write_bytes(data)
    landing.land("mnist", str(drop))
    assert landing.pending("mnist") == ["drop-1"]
    with fresh_worker(tmp_path, "ingest"):
        result = images.ingest_drop("mnist", "drop-1", "scheduled__ingest")
    assert result.status == "ingested" and result.emits_event
    return result.snapshot.event_extra()


def _work_files(services, work: str) -> set[str]:
    prefix = work.removeprefix(f"s3://{services.bucket}/") + "/"
    pages = services.s3.get_paginator("list_objects_v2").paginate(Bucket=services.bucket, Prefix=prefix)
    return {o["Key"][len(prefix):] for page in pages for o in page.get("Contents", [])}


def _weights(location: str) -> dict:
    import torch

    return torch.load(io.BytesIO(storage.read_bytes(location)), map_location="cpu", weights_only=True)


def _overrides(**given) -> dict:
    """What the DAG's train task passes: every overridable param, None where the run did not set it."""
    return {k: given.get(k) for k in ("epochs", "batch_size", "lr", "device")}


def test_mnist_trains_evaluates_and_logs_through_the_s3_work_folder(s3_images, mnist_event, tmp_path):
    import mlflow
    import torch

    from retrain.workloads import images

    services = s3_images
    run_id = "manual__2026-11-26T00:00:00+00:00"
    work = get_settings().training_work(DAG_ID, run_id, "mnist")
    assert work.startswith(f"s3://{services.bucket}/")

    with fresh_worker(tmp_path, "gate"):
        verdict = images.gate(mnist_event, images.dataset_config("mnist"), work)
    assert verdict["verdict"] == "passed"
    with fresh_worker(tmp_path, "train"):
        trained = images.train(mnist_event, images.dataset_config("mnist", _overrides(epochs=1, device="cpu")), work)
    assert trained["epochs_run"] == 1 and trained["train_samples"] + trained["val_samples"] == TRAIN
    with fresh_worker(tmp_path, "evaluate"):
        metrics = images.evaluate(mnist_event, images.dataset_config("mnist"), work)
    assert metrics["test_examples"] == TEST and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert {"quality/quality_report.json", "quality/quality_report.md", "checkpoints/last.pt", "model.pt",
            "train.json", "evaluate.json", "confusion_matrix.png"} <= _work_files(services, work)

    with fresh_worker(tmp_path, "log_candidate"):
        extra = images.log_candidate(mnist_event, images.dataset_config("mnist"), work,
                                     coordinates={"dag_id": DAG_ID, "run_id": run_id,
                                                  "task_id": "pipeline.log_candidate"}, quality=verdict)
    assert extra["model"] == "mnist_cnn" and extra["data"]["uri"] == mnist_event["uri"]
    assert extra["metrics"]["test_accuracy"] == pytest.approx(metrics["test_accuracy"])

    client = mlflow.MlflowClient(get_settings().mlflow_tracking_uri)
    run = client.get_run(extra["run_id"])
    assert run.data.params["loop.epochs"] == "1" and run.data.tags["quality.verdict"] == "passed"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")} == {
        "evaluation/evaluate.json", "evaluation/confusion_matrix.png", "evaluation/train.json"}
    assert {a.path for a in client.list_artifacts(run.info.run_id, "quality")} >= {"quality/quality_report.md"}
    logged = mlflow.pytorch.load_model(extra["model_uri"], map_location="cpu").state_dict()
    on_s3 = _weights(storage.join(work, "model.pt"))
    assert logged.keys() == on_s3.keys() and all(torch.equal(logged[k], on_s3[k]) for k in on_s3)

    # nothing of the data plane went to local disk: no data root under RETRAIN_HOME, no stray torch files
    assert not (get_settings().home / "data").exists()
    assert not [p for p in tmp_path.rglob("*.pt")]


def test_a_retried_train_task_resumes_from_the_checkpoint_on_s3(s3_images, mnist_event, tmp_path, monkeypatch,
                                                                caplog):
    """A worker lost after epoch 1's checkpoint reached S3: the retry, on another host, trains epoch 2 only and
    ends with the weights of an uninterrupted two-epoch run."""
    import torch

    from retrain.training import loop
    from retrain.workloads import images

    work = get_settings().training_work(DAG_ID, "manual__crash", "mnist")
    real_save = loop._save_checkpoint

    def save_then_lose_the_worker(location, payload):
        real_save(location, payload)
        raise ConnectionError("worker lost")

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_lose_the_worker)
    with fresh_worker(tmp_path, "train-try-1"), pytest.raises(ConnectionError):
        images.train(mnist_event, images.dataset_config("mnist", _overrides(epochs=2, device="cpu")), work)
    monkeypatch.setattr(loop, "_save_checkpoint", real_save)
    assert _work_files(s3_images, work) == {"checkpoints/last.pt"}

    with fresh_worker(tmp_path, "train-try-2"), caplog.at_level(logging.INFO, logger=loop.__name__):
        resumed = images.train(mnist_event, images.dataset_config("mnist", _overrides(epochs=2, device="cpu")), work)
    assert resumed["epochs_run"] == 2
    assert f"resuming from {storage.join(work, 'checkpoints', 'last.pt')} after epoch 1" in caplog.text

    straight_work = get_settings().training_work(DAG_ID, "manual__straight", "mnist")
    with fresh_worker(tmp_path, "train-straight"):
        images.train(mnist_event, images.dataset_config("mnist", _overrides(epochs=2, device="cpu")), straight_work)
    a, b = _weights(storage.join(work, "model.pt")), _weights(storage.join(straight_work, "model.pt"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
