"""Household power: prepare -> train -> evaluate on a small snapshot, with a small split from a temp config."""

from __future__ import annotations

import json
import math
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from retrain import config, settings
from retrain.data import power
from retrain.errors import DataQualityError
from retrain.ingest import landing
from retrain.ingest import power as ingest
from retrain.training import tabular

DATASET = "household_power"
DAYS = 20
REPO = Path(__file__).resolve().parents[2]


def _small_split(raw):
    """A split that fits ~20 days: 2 test, 2 validation, at least 5 training days; 24 h lags and baseline."""
    ds = raw["datasets"][DATASET]
    ds["split"] = {"test_days": 2, "valid_days": 2, "min_train_days": 5}
    ds["features"]["lags_hours"] = [1, 2, 3, 24]
    ds["features"]["rolling_hours"] = [3, 24]
    ds["seasonal_naive_lag_hours"] = 24
    ds["lightgbm"]["n_estimators"] = 200
    ds["lightgbm"]["num_threads"] = 1  # tiny data: one thread, no OpenMP spin under load


def _load_small_split() -> config.TabularDataset:
    cfg = config.load("tabular_ml_training").datasets[DATASET]
    assert cfg.split.test_days == 2 and cfg.split.valid_days == 2 and cfg.seasonal_naive_lag_hours == 24
    return cfg


def _snapshot(folder: Path, days: int, seed: int = 3):
    source = folder / f"power_{days}d.txt"
    source.write_bytes(power.generate_power(days * 1440, start=datetime(2007, 1, 1), seed=seed))
    landing.land(DATASET, str(source))
    return ingest.ingest_file(source.name, "run_1").snapshot


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One isolated RETRAIN_HOME and config copy for the module: ingest, prepare, train, evaluate once."""
    root = tmp_path_factory.mktemp("tabular")
    configs = root / "configs"
    shutil.copytree(REPO / "configs", configs)
    path = configs / "tabular_ml_training.yaml"
    raw = yaml.safe_load(path.read_text())
    _small_split(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_HOME", str(root / "home"))
        mp.setenv("RETRAIN_CONFIG_DIR", str(configs))
        mp.delenv("RETRAIN_DATA_ROOT", raising=False)
        settings.reset_settings()
        config.load.cache_clear()
        try:
            cfg = _load_small_split()
            snapshot = _snapshot(root, DAYS)
            work = root / "work"
            prepared = tabular.prepare(snapshot, cfg, str(work))
            trained = tabular.train(cfg, str(work))
            metrics = tabular.evaluate(cfg, str(work))
        finally:
            settings.reset_settings()
            config.load.cache_clear()
    return cfg, work, prepared, trained, metrics


@pytest.fixture
def small_split(retrain_home, edit_config):
    edit_config("tabular_ml_training", _small_split)
    return _load_small_split()


def test_split_is_time_ordered_without_leakage(trained):
    _, work, prepared, _, _ = trained
    train, valid, test = (pd.read_parquet(work / f"{n}.parquet") for n in ("train", "valid", "test"))
    assert len(train) and len(valid) and len(test)
    assert train.index.max() < valid.index.min()
    assert valid.index.max() < test.index.min()
    for part in (train, valid, test):
        assert part.index.is_monotonic_increasing and part.index.is_unique
        assert part["target"].notna().all()

    # the requested windows: 2 test days, 2 validation days, the rest (after 24 h warm-up) for training
    assert len(test) <= 2 * 24 and len(valid) <= 2 * 24
    assert len(test) >= 2 * 24 - 2 and len(valid) >= 2 * 24 - 2
    assert len(train) >= 5 * 24
    assert train.index.min() >= pd.Timestamp(2007, 1, 2), "the first 24 h have no full lags"
    assert test.index.max() == pd.Timestamp(2007, 1, 1) + pd.Timedelta(days=DAYS) - pd.Timedelta(hours=1)

    assert prepared["split"]["train"]["rows"] == len(train)
    assert prepared["split"]["test"]["end"] == str(test.index.max())
    assert "target" not in prepared["features"] and "seasonal_naive" not in prepared["features"]
    assert json.loads((work / "prepare.json").read_text())["features"] == prepared["features"]


def test_features_use_only_earlier_hours(trained):
    _, work, prepared, *_ = trained
    frames = pd.concat([pd.read_parquet(work / f"{n}.parquet") for n in ("train", "valid", "test")]).sort_index()
    target = frames["target"]
    for lag in (1, 24):
        earlier = target.reindex(frames.index - pd.Timedelta(hours=lag)).to_numpy()
        known = ~np.isnan(earlier)
        assert known.sum() > 100
        np.testing.assert_allclose(frames[f"lag_{lag}h"].to_numpy()[known], earlier[known])
    earlier = target.reindex(frames.index - pd.Timedelta(hours=24)).to_numpy()
    known = ~np.isnan(earlier)
    np.testing.assert_allclose(frames["seasonal_naive"].to_numpy()[known], earlier[known])
    # the current hour's target never appears among the features
    for column in tabular.feature_columns(frames):
        assert not np.allclose(frames[column].to_numpy(dtype=float), target.to_numpy(), equal_nan=True), column


def test_metrics_are_finite_and_the_model_is_competitive(trained):
    _, work, _, trained_summary, metrics = trained
    for key in ("test_rmse", "test_mae", "baseline_seasonal_naive_rmse", "baseline_seasonal_naive_mae"):
        assert key in metrics
        assert math.isfinite(metrics[key]) and metrics[key] > 0, (key, metrics[key])
    assert metrics["test_mae"] <= metrics["test_rmse"]
    assert metrics["test_rmse"] < 1.5 * metrics["baseline_seasonal_naive_rmse"], metrics
    assert metrics["test_examples"] == len(pd.read_parquet(work / "test.parquet"))
    assert json.loads((work / "evaluate.json").read_text()) == metrics
    assert 1 <= trained_summary["best_iteration"] <= trained_summary["iterations"] <= 200


def test_evaluate_writes_model_predictions_and_plots(trained):
    _, work, prepared, *_ = trained
    for name in ("model.txt", "test_predictions.parquet", "residuals.png", "feature_importance.png"):
        assert (work / name).is_file() and (work / name).stat().st_size > 0, name
    for plot in ("residuals.png", "feature_importance.png"):
        assert (work / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    predictions = pd.read_parquet(work / "test_predictions.parquet")
    assert list(predictions.columns) == ["timestamp", "actual", "predicted", "seasonal_naive"]
    assert len(predictions) == len(pd.read_parquet(work / "test.parquet"))
    assert predictions["predicted"].notna().all()
    booster = tabular.load_booster(str(work))
    assert booster.feature_name() == prepared["features"]


def test_training_is_reproducible(trained, tmp_path):
    cfg, work, _, _, metrics = trained
    again = tmp_path / "again"
    again.mkdir()
    for name in ("train", "valid", "test"):
        (again / f"{name}.parquet").write_bytes((work / f"{name}.parquet").read_bytes())
    tabular.train(cfg, str(again))
    assert tabular.evaluate(cfg, str(again))["test_rmse"] == pytest.approx(metrics["test_rmse"])


def test_too_little_history_is_a_data_quality_error(small_split, tmp_path):
    snapshot = _snapshot(tmp_path, 7)  # 24 h warm-up + 2 + 2 days leaves < 5 training days
    with pytest.raises(DataQualityError, match="training days") as info:
        tabular.prepare(snapshot, small_split, str(tmp_path / "work"))
    assert info.value.failures[0]["expectation"] == "time_split"
    assert "at least 5 days of training data" in info.value.failures[0]["rule"]
