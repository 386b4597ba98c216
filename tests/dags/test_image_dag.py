"""The image workload in-process: ingest_mnist, then image_dl_training for MNIST with tiny data."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from retrain.settings import get_settings


@pytest.fixture(scope="module")
def dags(airflow_db):
    from inprocess import load_dags

    return load_dags()


@pytest.fixture(scope="module")
def mnist_chain(dags, tmp_path_factory):
    from retrain.data import mnist
    from inprocess import asset_events
    from retrain.ingest import landing

    drop = tmp_path_factory.mktemp("drops") / "mnist-2026-11-26"
    drop.mkdir()
    for name, data in mnist.generate_mnist(1500, 400, seed=3, gz=True).items():
        (drop / name).write_bytes(data)
    landing.land("mnist", str(drop))
    ingest = dags.get_dag("ingest_mnist").test()
    train = dags.get_dag("image_dl_training").test(run_conf={"dataset": "mnist", "epochs": 2})
    return {"ingest": ingest, "train": train, "data": asset_events("mnist")[-1],
            "candidate": asset_events("mnist_cnn.candidate")}


def test_mnist_drop_becomes_a_snapshot_event(mnist_chain):
    from inprocess import task_states

    assert str(mnist_chain["ingest"].state) == "success", task_states(mnist_chain["ingest"])
    extra = mnist_chain["data"]["extra"]
    assert extra["rows"] == 1900 and extra["dataset"] == "mnist"
    assert any(name.endswith("train-images-idx3-ubyte.gz") for name in extra["source_files"])


def test_image_training_logs_a_candidate(mnist_chain):
    import mlflow

    from inprocess import task_states

    assert str(mnist_chain["train"].state) == "success", task_states(mnist_chain["train"])
    states = task_states(mnist_chain["train"])
    assert states["pipeline.train[0]"] == "success"
    events = mnist_chain["candidate"]
    assert len(events) == 1
    extra = events[0]["extra"]
    assert extra["model"] == "mnist_cnn" and extra["data"]["version"] == mnist_chain["data"]["extra"]["version"]
    run = mlflow.MlflowClient(get_settings().mlflow_tracking_uri).get_run(extra["run_id"])
    metrics = run.data.metrics
    assert metrics["test_accuracy"] > 0.5 > metrics["baseline_majority_accuracy"]
    assert "test_macro_f1" in metrics and "test_accuracy_7" in metrics
    assert run.data.params["loop.epochs"] == "2"  # the manual run's override
    assert run.data.tags["quality.verdict"] == "passed"
    task = next(t for t in mnist_chain["train"].get_task_instances() if t.task_id == "pipeline.train")
    assert (task.pool, task.queue) == ("gpu", "gpu")


def test_only_the_datasets_whose_events_arrived_are_trained(monkeypatch):
    """Each dataset's newest snapshot by commit order (not by event time) trains; the others are superseded."""
    from retrain import events
    from retrain.airflow import runs

    def extra(version: str, sequence: int) -> dict:
        return {"schema": 1, "dataset": "mnist", "uri": f"file:///x/version={version}", "version": version,
                "sha256": "0", "rows": 1, "source_files": [], "sequence": sequence}

    monkeypatch.setattr(events, "snapshot_order", lambda e: e["sequence"])  # instead of reading the manifests
    newer = SimpleNamespace(extra=extra("b", 2), timestamp=1)
    older = SimpleNamespace(extra=extra("a", 1), timestamp=2)  # its event was emitted later

    class Triggering(dict):
        def __getitem__(self, asset):
            return dict.__getitem__(self, asset.name)

    context = {"triggering_asset_events": Triggering(mnist=[newer, older])}
    assert [(e["version"], e["superseded_versions"]) for e in runs.image_events(context, ("mnist", "cifar10"))] \
        == [("b", ["a"])]


def test_the_mnist_candidate_is_promoted_as_first_model(mnist_chain, dags):
    from retrain import registry

    run = dags.get_dag("promote_models").test()
    assert str(run.state) == "success"
    decision = next(t for t in run.get_task_instances() if t.task_id == "judge_image").xcom_pull(task_ids="judge_image", map_indexes=0)
    assert decision["model"] == "mnist_cnn" and decision["outcome"] == "first_model", decision
    champion = registry.alias_version("mnist_cnn", registry.CHAMPION)
    assert champion.version == decision["version"] and champion.tags["quality.verdict"] == "passed"
