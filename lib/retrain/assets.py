"""The asset catalog: every asset's name and URI, nothing else.

Plain data, importable without Airflow. :mod:`retrain.orchestration` turns these into ``airflow.sdk.Asset``
objects; DAG files refer to catalog names, never to literal URIs.

Data assets live under ``$RETRAIN_DATA_ROOT/curated/<name>`` (``file://`` locally, ``s3://`` in scale-out).
Model assets use the ``x-mlflow://`` scheme: ``x-mlflow://models/<registered model>/<candidate|champion>``.
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


def data_asset(name: str) -> DataAsset:
    try:
        return DATA_ASSETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATA_ASSETS)}") from None
