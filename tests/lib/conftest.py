"""Fixtures shared by the library tests: an isolated RETRAIN_HOME and a private copy of configs/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from retrain import config, settings

REPO = Path(__file__).resolve().parents[2]


def _reset() -> None:
    settings.reset_settings()
    config.load.cache_clear()


@pytest.fixture
def retrain_home(tmp_path, monkeypatch) -> Path:
    """RETRAIN_HOME in a temporary folder, RETRAIN_DATA_ROOT unset (so data lives in ``$RETRAIN_HOME/data``)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("RETRAIN_HOME", str(home))
    for name in ("RETRAIN_DATA_ROOT", "RETRAIN_EXPECTATIONS"):
        monkeypatch.delenv(name, raising=False)
    _reset()
    yield home
    monkeypatch.undo()
    _reset()


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """A writable copy of the repo's configs/, used as RETRAIN_CONFIG_DIR."""
    folder = tmp_path / "configs"
    shutil.copytree(REPO / "configs", folder)
    monkeypatch.setenv("RETRAIN_CONFIG_DIR", str(folder))
    _reset()
    yield folder
    monkeypatch.undo()
    _reset()


@pytest.fixture
def edit_config(config_dir):
    """``edit_config(workload, change)``: apply ``change(raw_dict)`` to the copied YAML; returns its path."""

    def edit(workload: str, change) -> Path:
        path = config_dir / f"{workload}.yaml"
        raw = yaml.safe_load(path.read_text())
        change(raw)
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        _reset()
        return path

    return edit
