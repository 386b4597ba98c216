"""The asset catalog: every asset's name and URI, nothing else.

Plain data, importable without Airflow. :mod:`retrain.airflow.assets` turns these into ``airflow.sdk.Asset``
objects; DAG files refer to catalog names, never to literal URIs.

Data assets live under ``$RETRAIN_DATA_ROOT/curated/<name>`` (``file://`` locally, ``s3://`` in scale-out).
Model assets use the ``x-mlflow://`` scheme: ``x-mlflow://models/<registered model>/<candidate|champion>``.
Arrival assets (the sqs profile): ``landing_arrivals`` is fed by the SQS watcher (``x-sqs://<queue name>``);
``landing.<dataset>`` (``$RETRAIN_DATA_ROOT/landing/<dataset>``) names the landed objects an ingest run takes.
"""

from __future__ import annotations

from dataclasses import dataclass

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


DATA_ASSETS: dict[str, DataAsset] = {
    asset.name: asset
    for asset in (
        DataAsset("mnist", workload="image_dl_training"),
        DataAsset("cifar10", workload="image_dl_training"),
        DataAsset("ticks", workload="time_series_training", partitioned=True),
        DataAsset("household_power", workload="tabular_ml_training"),
    )
}

# registered model name -> the dataset it is trained on
MODELS: dict[str, str] = {
    "mnist_cnn": "mnist",
    "cifar10_cnn": "cifar10",
    "ticks_direction_lgbm": "ticks",
    "household_power_lgbm": "household_power",
}


def model_for_dataset(dataset: str) -> str:
    for model, ds in MODELS.items():
        if ds == dataset:
            return model
    raise KeyError(f"no registered model is trained on dataset {dataset!r}; known: {sorted(MODELS.values())}")


def _model_asset(model: str, stage: str) -> ModelAsset:
    dataset = MODELS[model]
    return ModelAsset(model=model, dataset=dataset, workload=DATA_ASSETS[dataset].workload, stage=stage)


CANDIDATE_ASSETS: dict[str, ModelAsset] = {m: _model_asset(m, "candidate") for m in MODELS}
CHAMPION_ASSETS: dict[str, ModelAsset] = {m: _model_asset(m, "champion") for m in MODELS}


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
LANDING_ASSETS: dict[str, LandingAsset] = {ds: LandingAsset(ds) for ds in ("household_power", "mnist", "cifar10")}
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
