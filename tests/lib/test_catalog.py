"""The catalog is the one place a model's facts live: everything else reads them from it."""

from __future__ import annotations

import pytest

from retrain import assets, catalog, config
from retrain.workloads import images, promote


def test_assets_promotion_and_demo_derive_from_the_catalog():
    from retrain import demo
    from retrain.workloads import adhoc

    assert dict(assets.MODELS) == {m.name: m.dataset for m in catalog.MODELS.values()}
    assert {n for n, a in assets.DATA_ASSETS.items() if a.partitioned} == {"ticks"}
    assert set(assets.LANDING_ASSETS) == {"household_power", "mnist", "cifar10"}
    from retrain import arrivals

    assert dict(arrivals.ARRIVES_AS) == {"mnist": "drop", "cifar10": "drop", "household_power": "file"}
    assert set(arrivals.NOT_ROUTED) == {"ticks"}
    assert demo.MODELS["ticks_direction_lgbm"] == ("ticks", "time_series_training", "promote_partitioned_models")
    assert adhoc.KINDS == {"tabular": "tabular_ml_training", "image": "image_dl_training",
                           "timeseries": "time_series_training"}
    assert adhoc.DEFAULT_RESOURCES == {"tabular": "cpu", "image": "gpu", "timeseries": "cpu"}
    assert promote.postprocess_for("ticks_direction_lgbm") is promote.up_or_down
    assert promote.baseline_for("mnist_cnn") is images.majority_baseline


def test_an_entry_registered_at_run_time_is_seen_by_the_derived_names(monkeypatch):
    monkeypatch.setitem(catalog.DATASETS, "toy", catalog.DatasetEntry("toy", "tabular_ml_training", "x:y"))
    monkeypatch.setitem(catalog.MODELS, "toy_model", catalog.ModelEntry(
        "toy_model", "toy", "test_rmse", evaluation_set="x:y", held_out="tail"))
    assert assets.MODELS["toy_model"] == "toy"
    assert assets.CANDIDATE_ASSETS["toy_model"].uri == "x-mlflow://models/toy_model/candidate"
    assert assets.model_for_dataset("toy") == "toy_model"
    assert "toy" in assets.DATA_ASSETS and "toy" in assets.LANDING_ASSETS


def test_an_image_dataset_without_a_catalog_model_fails_loudly_instead_of_getting_another_cnn(monkeypatch):
    monkeypatch.setitem(catalog.DATASETS, "fashion", catalog.DatasetEntry("fashion", "image_dl_training", "x:y"))
    with pytest.raises(config.ConfigError, match="no registered model is trained on dataset 'fashion'"):
        images.build_model("fashion")
    monkeypatch.setitem(catalog.MODELS, "fashion_cnn", catalog.ModelEntry(
        "fashion_cnn", "fashion", "test_accuracy", evaluation_set="x:y", held_out="test"))
    with pytest.raises(config.ConfigError, match="names no factory"):
        images.build_model("fashion")


def test_each_image_dataset_gets_its_own_network():
    pytest.importorskip("torch")
    assert type(images.build_model("mnist")).__name__ == "MnistCNN"
    assert type(images.build_model("cifar10")).__name__ == "Cifar10CNN"


def test_an_unknown_candidate_model_is_a_candidate_error():
    from retrain.errors import CandidateError

    with pytest.raises(CandidateError, match="'nope'"):
        promote.evaluation_set_loader("nope")

