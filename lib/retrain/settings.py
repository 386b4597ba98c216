"""The environment, mapped once to paths and URIs.

Every other module asks :func:`get_settings` instead of reading environment variables, so switching between
the embedded default and the scale-out profile is a change of environment, not of code.

=========================  ====================================================  =================================
variable                   meaning                                               default
=========================  ====================================================  =================================
RETRAIN_HOME               state of the embedded stack (Airflow home, MLflow)    ``.retrain/`` in the checkout
RETRAIN_DATA_ROOT          landing/, curated/, quarantine/, archive/, work/      ``$RETRAIN_HOME/data``
                           (a local path or an ``s3://bucket/prefix`` URI)
RETRAIN_CONFIG_DIR         workload and promotion YAML                           ``configs/`` in the checkout
RETRAIN_EXPECTATIONS       Great Expectations suites                             ``expectations/`` in the checkout
MLFLOW_TRACKING_URI        tracking server or store                              SQLite under ``$RETRAIN_HOME``
RETRAIN_STORAGE_CONN_ID    Airflow connection of an ``s3://`` data root          ``aws_default``
RETRAIN_ARRIVALS           ``sensor``: ingest DAGs wait on the landing folder;   ``sensor``
                           ``sqs``: S3 notifications on an SQS queue start them
RETRAIN_SQS_QUEUE_URL      the queue S3 sends landing notifications to (sqs)     none
RETRAIN_SHARD_CACHE        local copies of snapshot files on an object store     ``$RETRAIN_HOME/cache/shards``
RETRAIN_SHARD_CACHE_BYTES  that cache's bound, least recently used out first   20 GiB
=========================  ====================================================  =================================
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from retrain.errors import ConfigError

ARRIVAL_MODES = ("sensor", "sqs")

_PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The checkout this package lives in (``lib/retrain`` → repo root), else the working directory."""
    candidate = _PACKAGE_DIR.parent.parent
    if (candidate / "pyproject.toml").is_file() and (candidate / "dags").is_dir():
        return candidate
    return Path.cwd()


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def path_safe(run_id: str) -> str:
    """An Airflow run id as one path segment (``manual__2026-01-01T00:00:00+00:00`` has ':' and '+')."""
    return _UNSAFE.sub("_", run_id).strip("_") or "manual"


def _join(root: str, *parts: str) -> str:
    """Join URI or path segments without collapsing the ``//`` of a scheme."""
    return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts if p]])


@dataclass(frozen=True)
class Settings:
    home: Path
    data_root: str
    config_dir: Path
    expectations_dir: Path
    dags_dir: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    storage_conn_id: str = "aws_default"
    arrivals: str = "sensor"
    sqs_queue_url: str | None = None

    @property
    def is_remote_data(self) -> bool:
        return "://" in self.data_root and not self.data_root.startswith("file://")

    @property
    def event_driven_arrivals(self) -> bool:
        """True in the scale-out profile where S3 notifications on SQS, not sensors, start the ingest DAGs."""
        return self.arrivals == "sqs"

    def data(self, *parts: str) -> str:
        """A location under the data root (a local path string or an ``s3://`` URI)."""
        return _join(self.data_root, *parts)

    def landing(self, *parts: str) -> str:
        return self.data("landing", *parts)

    def curated(self, *parts: str) -> str:
        return self.data("curated", *parts)

    def quarantine(self, *parts: str) -> str:
        return self.data("quarantine", *parts)

    def archive(self, *parts: str) -> str:
        return self.data("archive", *parts)

    def work(self, *parts: str) -> str:
        """Per-run scratch space shared by the tasks of one DAG run (on the data root, so workers share it)."""
        return self.data("work", *parts)

    def training_work(self, dag_id: str, run_id: str, dataset: str) -> str:
        """The work folder the tasks of one training run share."""
        return self.work("train", dag_id, path_safe(run_id), dataset)

    def ingest_work(self, run_id: str, dataset: str) -> str:
        """Where one ingest run keeps the arrivals it claimed."""
        return self.work("ingest", path_safe(run_id), dataset)

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    def uri(self, location: str) -> str:
        """An absolute URI for a location under the data root, as asset URIs need."""
        if "://" in location:
            return location
        return "file://" + quote(str(Path(location).resolve()), safe="/=")


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


@functools.cache
def get_settings() -> Settings:
    """Settings from the current environment (cached; call :func:`reset_settings` after changing it)."""
    root = project_root()
    home = _env_path("RETRAIN_HOME", root / ".retrain")
    data_root = os.environ.get("RETRAIN_DATA_ROOT") or str(home / "data")
    if "://" not in data_root:
        data_root = str(Path(data_root).expanduser().resolve())
    elif data_root.startswith("file://"):
        data_root = data_root[len("file://"):]
    mlflow_dir = home / "mlflow"
    arrivals = os.environ.get("RETRAIN_ARRIVALS") or "sensor"
    queue_url = os.environ.get("RETRAIN_SQS_QUEUE_URL") or None
    if arrivals not in ARRIVAL_MODES:
        raise ConfigError(f"RETRAIN_ARRIVALS must be one of {ARRIVAL_MODES} (observed {arrivals!r})")
    if arrivals == "sqs" and not (queue_url and data_root.startswith("s3://")):
        raise ConfigError("RETRAIN_ARRIVALS=sqs needs RETRAIN_SQS_QUEUE_URL and an s3:// RETRAIN_DATA_ROOT "
                          f"(observed queue {queue_url!r}, data root {data_root!r})")
    return Settings(
        home=home,
        data_root=data_root,
        config_dir=_env_path("RETRAIN_CONFIG_DIR", root / "configs"),
        expectations_dir=_env_path("RETRAIN_EXPECTATIONS", root / "expectations"),
        dags_dir=_env_path("RETRAIN_DAGS_DIR", root / "dags"),
        mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlflow_dir / 'mlflow.db'}",
        mlflow_artifact_root=os.environ.get("RETRAIN_MLFLOW_ARTIFACT_ROOT") or (mlflow_dir / "artifacts").as_uri(),
        storage_conn_id=os.environ.get("RETRAIN_STORAGE_CONN_ID") or "aws_default",
        arrivals=arrivals,
        sqs_queue_url=queue_url,
    )


def reset_settings() -> None:
    get_settings.cache_clear()
