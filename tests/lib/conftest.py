"""Fixtures shared by the library tests: an isolated RETRAIN_HOME and a private copy of configs/."""

from __future__ import annotations

import contextlib
import shutil
import socket
from pathlib import Path

import pytest
import yaml

from retrain import config, settings

REPO = Path(__file__).resolve().parents[2]
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"  # the machine's PostgreSQL (trust auth)


def _reset() -> None:
    """Forget every cached reading of the environment, the configs, the suites and the tracking setup."""
    from retrain import promotion, quality, tracking

    settings.reset_settings()
    config.load.cache_clear()
    promotion.load_policies.cache_clear()
    quality.load_suite.cache_clear()
    tracking._configured.cache_clear()


@contextlib.contextmanager
def _mlflow_world(home: Path, env: dict[str, str]):
    """``env`` set (a tracking URI among it), RETRAIN_DATA_ROOT unset, and a real 3-day power snapshot in
    ``home``: yields the snapshot's event extra. For modules that judge candidates against a real MLflow."""
    from retrain import tracking
    from retrain.data.power import generate_power
    from retrain.ingest import landing, power

    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"RETRAIN_HOME": str(home), **env}.items():
            mp.setenv(key, value)
        mp.delenv("RETRAIN_DATA_ROOT", raising=False)
        settings.reset_settings()
        tracking._configured.cache_clear()
        source = home / "power.txt"
        source.write_bytes(generate_power(3 * 1440, seed=5))
        landing.land("household_power", str(source))
        try:
            yield power.ingest_file("power.txt", "setup").snapshot.event_extra()
        finally:
            settings.reset_settings()
            tracking._configured.cache_clear()


@pytest.fixture(scope="session")
def mlflow_world():
    """``mlflow_world(home, env)``: the :func:`_mlflow_world` context manager, for module fixtures."""
    return _mlflow_world


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


@pytest.fixture(scope="module")
def repo_expectations():
    """The repo's expectations/ (default settings), whatever the surrounding environment says; for modules
    that validate with the repo's suites (``pytestmark = pytest.mark.usefixtures("repo_expectations")``)."""
    from retrain import quality

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RETRAIN_EXPECTATIONS", raising=False)
        settings.reset_settings()
        quality.load_suite.cache_clear()
        yield
    settings.reset_settings()
    quality.load_suite.cache_clear()


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


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL the Celery profile's tests use (its locks live there); skips when it is not reachable."""
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    return POSTGRES
