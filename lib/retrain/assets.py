"""Every asset's name and URI, derived from :mod:`retrain.catalog`; nothing else.

Plain data, importable without Airflow. :mod:`retrain.airflow.assets` turns these into ``airflow.sdk.Asset``
objects; DAG files refer to catalog names, never to literal URIs.

Data assets live under ``$RETRAIN_DATA_ROOT/curated/<name>`` (``file://`` locally, ``s3://`` in scale-out).
Model assets use the ``x-mlflow://`` scheme: ``x-mlflow://models/<registered model>/<candidate|champion>``.
Arrival assets (the sqs profile): ``landing_arrivals`` is fed by the SQS watcher (``x-sqs://<queue name>``);
``landing.<dataset>`` (``$RETRAIN_DATA_ROOT/landing/<dataset>``) names the landed objects an ingest run takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from retrain import catalog
from retrain.settings import get_settings

EVENT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DataAsset:
    name: str
    workload: str
    partitioned: bool = False

    @property
    def uri(self) -> str:
        settings = get_settings()
        return settings.uri(settings.curated(self.name))


@dataclass(frozen=True)
class ModelAsset:
    model: str  # registered model name
    dataset: str
    workload: str
    stage: str  # "candidate" or "champion"

    @property
    def name(self) -> str:
        return f"{self.model}.{self.stage}"

    @property
    def uri(self) -> str:
        return f"x-mlflow://models/{self.model}/{self.stage}"


DATA_ASSETS: Mapping[str, DataAsset] = catalog.View(lambda: {
    d.name: DataAsset(d.name, workload=d.workload, partitioned=d.partitioned) for d in catalog.DATASETS.values()})

# registered model name -> the dataset it is trained on
MODELS: Mapping[str, str] = catalog.View(lambda: {m.name: m.dataset for m in catalog.MODELS.values()})


def model_for_dataset(dataset: str) -> str:
    return catalog.model_for_dataset(dataset).name


def _model_asset(model: str, stage: str) -> ModelAsset:
    dataset = catalog.model(model).dataset
    return ModelAsset(model=model, dataset=dataset, workload=catalog.dataset(dataset).workload, stage=stage)


CANDIDATE_ASSETS: Mapping[str, ModelAsset] = catalog.View(lambda: {m: _model_asset(m, "candidate") for m in catalog.MODELS})
CHAMPION_ASSETS: Mapping[str, ModelAsset] = catalog.View(lambda: {m: _model_asset(m, "champion") for m in catalog.MODELS})


@dataclass(frozen=True)
class LandingAsset:
    dataset: str

    @property
    def name(self) -> str:
        return f"landing.{self.dataset}"

    @property
    def uri(self) -> str:
        settings = get_settings()
        return settings.uri(settings.landing(self.dataset))


# datasets whose arrivals are routed from S3 notifications (ticks land on their partition timetable instead)
LANDING_ASSETS: Mapping[str, LandingAsset] = catalog.View(lambda: {
    d.name: LandingAsset(d.name) for d in catalog.DATASETS.values() if d.arrives_as})
ARRIVALS_ASSET = "landing_arrivals"


def arrivals_uri() -> str:
    """The SQS-fed asset's URI: the queue's name (``.../<account>/<name>``), never the endpoint."""
    queue_url = get_settings().sqs_queue_url or "unset"
    return "x-sqs://" + queue_url.rstrip("/").rsplit("/", 1)[-1]


def data_asset(name: str) -> DataAsset:
    try:
        return DATA_ASSETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATA_ASSETS)}") from None
