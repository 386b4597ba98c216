"""``airflow.sdk`` Asset objects and aliases for the names :mod:`retrain.assets` defines."""

from __future__ import annotations

from airflow.sdk import Asset

from retrain import assets

CHAMPIONS_ALIAS = "retrain_champions"
REJUDGE_ALIAS = "retrain_rejudge"  # candidate events emitted again for a challenger whose comparison went stale
CANDIDATES_ALIAS = "retrain_candidates"


def data_asset(name: str) -> Asset:
    spec = assets.data_asset(name)
    return Asset(name=spec.name, uri=spec.uri, group="data", extra={"workload": spec.workload})


def candidate_asset(model: str) -> Asset:
    spec = assets.CANDIDATE_ASSETS[model]
    return Asset(name=spec.name, uri=spec.uri, group="model", extra={"model": model, "dataset": spec.dataset})


def champion_asset(model: str) -> Asset:
    spec = assets.CHAMPION_ASSETS[model]
    return Asset(name=spec.name, uri=spec.uri, group="model", extra={"model": model, "dataset": spec.dataset})


def landing_asset(dataset: str) -> Asset:
    spec = assets.LANDING_ASSETS[dataset]
    return Asset(name=spec.name, uri=spec.uri, group="landing", extra={"dataset": dataset})
