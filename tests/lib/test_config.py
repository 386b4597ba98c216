"""Workload configuration: the repo's YAML loads; typos and impossible values are ConfigErrors naming file and key."""

from __future__ import annotations

import pytest

from retrain import config
from retrain.errors import ConfigError


@pytest.fixture(autouse=True)
def _fresh_caches(monkeypatch):
    monkeypatch.delenv("RETRAIN_CONFIG_DIR", raising=False)
    config.load.cache_clear()
    from retrain import settings

    settings.reset_settings()
    yield
    monkeypatch.undo()
    config.load.cache_clear()
    settings.reset_settings()


def test_repo_tabular_config_loads():
    cfg = config.load("tabular_ml_training")
    assert isinstance(cfg, config.TabularConfig)
    assert cfg.workload == "tabular_ml_training"
    assert cfg.defaults.owner == "ml-platform"
    assert cfg.defaults.pool == "cpu"
    power = cfg.datasets["household_power"]
    assert power.model == "household_power_lgbm"
    assert power.features.target == "global_active_power"
    assert power.split.test_days >= 1 and power.split.valid_days >= 1
    assert 0 < power.lightgbm.learning_rate <= 1
    assert config.load("tabular_ml_training") is cfg, "loaded once, then cached"


def test_repo_ingest_config_loads():
    cfg = config.load("ingest")
    assert isinstance(cfg, config.IngestConfig)
    assert cfg.poke_interval_seconds > 0
    assert cfg.defaults.retries >= 0


def test_config_is_frozen():
    cfg = config.load("tabular_ml_training")
    with pytest.raises(Exception):
        cfg.defaults.retries = 5  # type: ignore[misc]


def _set(path: list[str], value):
    def change(raw):
        node = raw
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


BAD = {
    "unknown-top-level-key": ("tabular_ml_training", ["max_active_run"], 1, "max_active_run", "Extra inputs"),
    "unknown-default-key": ("tabular_ml_training", ["defaults", "retires"], 2, "defaults.retires", "Extra inputs"),
    "unknown-lightgbm-key": ("tabular_ml_training", ["datasets", "household_power", "lightgbm", "learning_rat"], 0.1,
                             "datasets.household_power.lightgbm.learning_rat", "Extra inputs"),
    "negative-retries": ("tabular_ml_training", ["defaults", "retries"], -1, "defaults.retries", "-1"),
    "zero-learning-rate": ("tabular_ml_training", ["datasets", "household_power", "lightgbm", "learning_rate"], 0,
                           "datasets.household_power.lightgbm.learning_rate", "greater than 0"),
    "zero-test-days": ("tabular_ml_training", ["datasets", "household_power", "split", "test_days"], 0,
                       "datasets.household_power.split.test_days", "0"),
    "unknown-objective": ("tabular_ml_training", ["datasets", "household_power", "lightgbm", "objective"], "mse",
                          "datasets.household_power.lightgbm.objective", "'mse'"),
    "zero-lag": ("tabular_ml_training", ["datasets", "household_power", "features", "lags_hours"], [0, 1],
                 "datasets.household_power.features", "at least 1"),
    "retries-as-text": ("ingest", ["defaults", "retries"], "three", "defaults.retries", "'three'"),
    "zero-poke-interval": ("ingest", ["poke_interval_seconds"], 0, "poke_interval_seconds", "greater than 0"),
}


@pytest.mark.parametrize("workload, path, value, key, observed", list(BAD.values()), ids=list(BAD))
def test_bad_value_is_a_config_error_naming_file_and_key(edit_config, workload, path, value, key, observed):
    file = edit_config(workload, _set(path, value))
    with pytest.raises(ConfigError) as info:
        config.load(workload)
    message = str(info.value)
    assert message.startswith(f"{file}: "), message
    assert f"{key}: " in message, message
    assert observed in message, message


def test_good_edit_in_the_config_dir_is_used(edit_config):
    edit_config("tabular_ml_training", _set(["defaults", "retries"], 7))
    assert config.load("tabular_ml_training").defaults.retries == 7


def test_missing_required_key(edit_config):
    file = edit_config("tabular_ml_training", lambda raw: raw["defaults"].pop("owner"))
    with pytest.raises(ConfigError, match=r"defaults\.owner: Field required") as info:
        config.load("tabular_ml_training")
    assert str(file) in str(info.value)


def test_workload_name_must_match_the_file(edit_config):
    file = edit_config("ingest", _set(["workload"], "ingest_v2"))
    with pytest.raises(ConfigError, match="workload must be 'ingest'") as info:
        config.load("ingest")
    assert str(file) in str(info.value) and "ingest_v2" in str(info.value)


def test_missing_file(config_dir):
    with pytest.raises(ConfigError, match="no configuration for workload 'no_such_workload'") as info:
        config.load("no_such_workload")
    assert str(config_dir / "no_such_workload.yaml") in str(info.value)


def test_invalid_yaml(config_dir):
    (config_dir / "ingest.yaml").write_text("workload: ingest\ndefaults: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        config.load("ingest")
    assert str(config_dir / "ingest.yaml") in str(info.value)


def test_empty_file(config_dir):
    (config_dir / "ingest.yaml").write_text("")
    with pytest.raises(ConfigError, match="workload: Field required"):
        config.load("ingest")


def test_every_problem_is_reported_at_once(edit_config):
    def change(raw):
        raw["defaults"]["retries"] = -1
        raw["datasets"]["household_power"]["lightgbm"]["learning_rate"] = 0

    edit_config("tabular_ml_training", change)
    with pytest.raises(ConfigError) as info:
        config.load("tabular_ml_training")
    assert "defaults.retries" in str(info.value)
    assert "datasets.household_power.lightgbm.learning_rate" in str(info.value)
