"""The Airflow asset graph is connected: every asset a DAG is scheduled on or reads, and every model asset, has
a producing task (a task that declares it as a static outlet: events emitted through an AssetAlias record
none), and a publishing task emits only what its run produced."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def collected():
    """What the dag processor records for the project's DAGs (``AssetModelOperation``: schedule, inlet and
    outlet references per DAG, from the serialized DAGs)."""
    from airflow.dag_processing.collection import AssetModelOperation
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return AssetModelOperation.collect({dag_id: LazyDeserializedDAG.from_dag(dag) for dag_id, dag in bag.dags.items()})


def _producers(collected) -> dict[str, set[str]]:
    producers = defaultdict(set)
    for dag_id, references in collected.outlet_references.items():
        for task_id, asset in references:
            producers[asset.name].add(f"{dag_id}.{task_id}")
    return producers


def test_every_asset_a_dag_waits_for_or_reads_has_a_producing_task(collected):
    referenced = {asset.name for refs in collected.schedule_asset_references.values() for asset in refs}
    referenced |= {asset.name for refs in collected.inlet_references.values() for _, asset in refs}
    assert {"mnist_cnn.candidate", "cifar10_cnn.candidate", "household_power", "ticks"} <= referenced
    producers = _producers(collected)
    assert {name: producers.get(name) for name in referenced if not producers.get(name)} == {}


def test_every_model_asset_has_its_producing_task(collected):
    from retrain import assets

    producers = _producers(collected)
    for model in assets.MODELS:
        assert producers[f"{model}.candidate"], model
        assert producers[f"{model}.champion"], model
    assert producers["mnist_cnn.candidate"] == {"image_dl_training.pipeline.publish_candidate_mnist_cnn"}
    assert producers["cifar10_cnn.candidate"] == {"image_dl_training.pipeline.publish_candidate_cifar10_cnn"}
    assert producers["cifar10_cnn.champion"] == {"promote_models.publish_champion_cifar10_cnn"}
    assert producers["ticks_direction_lgbm.champion"] == {"promote_partitioned_models.publish_champion_ticks_direction_lgbm"}


class _Outlets(dict):
    def __missing__(self, asset):
        self[asset] = SimpleNamespace(extra={})
        return self[asset]


def test_a_publishing_task_emits_only_its_model_s_event():
    """Each pipeline (and each champion move) reaches every model's publishing task: the one of its model emits
    the event with the extra unchanged, the others are skipped (a skipped task emits no event)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from retrain.airflow.assets import candidate_asset
    from retrain.airflow.publishing import publish

    extra = {"model": "mnist_cnn", "run_id": "r1", "metrics": {"test_accuracy": 0.9}}
    outlets = _Outlets()
    assert publish(outlets, candidate_asset("mnist_cnn"), extra) == extra
    assert outlets[candidate_asset("mnist_cnn")].extra == extra
    with pytest.raises(AirflowSkipException, match="cifar10_cnn.candidate: nothing to publish"):
        publish(outlets, candidate_asset("cifar10_cnn"), extra)
    assert candidate_asset("cifar10_cnn") not in outlets


def test_the_champion_moves_are_those_the_judges_made():
    from retrain.airflow.publishing import champion_moves

    decisions = [{"model": "mnist_cnn", "version": "3", "champion_event": True, "candidate_run_id": "r3",
                  "previous_champion": "2", "metrics": {"acc": 0.9}},
                 None,  # a judge that failed
                 {"model": "mnist_cnn", "version": "4", "champion_event": False}]
    assert champion_moves(decisions) == [{"schema": 1, "model": "mnist_cnn", "version": "3", "model_uri": "models:/mnist_cnn/3",
                                          "run_id": "r3", "previous_champion": "2", "metrics": {"acc": 0.9}}]


def test_a_landing_event_is_published_only_for_a_dataset_that_got_objects():
    from airflow.sdk.exceptions import AirflowSkipException

    from retrain.airflow.assets import landing_asset
    from retrain.airflow.publishing import publish_landing

    events = {"mnist": {"keys": ["data/landing/mnist/d1/_SUCCESS"], "names": ["d1"], "source": "sqs"}}
    outlets = _Outlets()
    assert publish_landing(outlets, landing_asset("mnist"), events) == events["mnist"]
    assert outlets[landing_asset("mnist")].extra == events["mnist"]
    with pytest.raises(AirflowSkipException, match="nothing landed for cifar10"):
        publish_landing(outlets, landing_asset("cifar10"), events)
    with pytest.raises(AirflowSkipException):  # the router named nothing at all
        publish_landing(outlets, landing_asset("household_power"), None)
