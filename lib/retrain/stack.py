"""Set-up of the embedded stack's state under ``RETRAIN_HOME`` (metadata DB, pools, folders)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from retrain import environment
from retrain.settings import get_settings


def airflow_executable() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def setup(*, quiet: bool = True) -> None:
    """Migrate the Airflow metadata DB and create the pools; safe to run again."""
    env = os.environ | environment.airflow_environment()
    settings = get_settings()
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    for folder in ("landing", "curated", "quarantine", "archive", "work"):
        if not settings.is_remote_data:
            Path(settings.data(folder)).mkdir(parents=True, exist_ok=True)
    result = subprocess.run([airflow_executable(), "db", "migrate"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"airflow db migrate failed (exit {result.returncode})")
    if not quiet:
        print(f"Airflow metadata DB ready under {settings.airflow_home}")
    from retrain import orchestration

    orchestration.ensure_pools()
