"""What the real-stack tests share: a stack in a fresh RETRAIN_HOME on free ports, stopped at the end."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrain.stack import AirflowApi

RETRAIN = [sys.executable, "-m", "retrain"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_stack(home: Path, api_class: type[AirflowApi] = AirflowApi,
                  extra_env: dict[str, str] | None = None) -> Iterator[dict]:
    """``retrain up`` in ``home`` (nothing inherited from another stack, but ``extra_env``), ``retrain down`` at
    the end.

    Yields ``home``, ``env`` (the stack's environment, for subprocesses), ``api`` (logged-in REST client),
    ``retrain`` (the command) and ``mlflow`` (the tracking server's URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "RETRAIN_"))}
    env |= {"RETRAIN_HOME": str(home), "RETRAIN_AIRFLOW_PORT": str(free_port()), "RETRAIN_MLFLOW_PORT": str(free_port())}
    env |= extra_env or {}
    started = subprocess.run(RETRAIN + ["up"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        password = json.loads((home / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        api = api_class(f"http://127.0.0.1:{env['RETRAIN_AIRFLOW_PORT']}", password)
        yield {"home": home, "env": env, "api": api, "retrain": RETRAIN,
               "mlflow": f"http://127.0.0.1:{env['RETRAIN_MLFLOW_PORT']}"}
    finally:
        subprocess.run(RETRAIN + ["down"], env=env, capture_output=True, timeout=120)
        print(f"stack logs: {home / 'logs'}")


@pytest.fixture(scope="session")
def stack_in():
    """``stack_in(home, api_class=AirflowApi, extra_env=None)``: the :func:`running_stack` context manager, for
    module fixtures."""
    return running_stack
