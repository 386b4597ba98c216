"""One producing task per model asset, so the Airflow asset graph shows who produces every asset.

Airflow links an asset to its producers through the tasks that declare it as a *static* outlet (a
``TaskOutletAssetReference``, written when the DAG is parsed); an event emitted through an ``AssetAlias`` adds
none, so an asset reached only through an alias shows no producing task and the lineage graph breaks there.
A static outlet emits an event whenever its task succeeds, so each model gets its own publishing task, which
is skipped when what there is to publish is another model's (a skipped task emits no event).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import Asset

from retrain.airflow.champions import champion_event_extra


def publish(outlet_events, asset: Asset, extra: Mapping[str, Any]) -> dict:
    """Emit ``extra`` as the event of ``asset``, the calling task's static outlet, when ``extra`` is of the asset's
    model; skip the task otherwise."""
    from airflow.sdk.exceptions import AirflowSkipException

    model = asset.extra["model"]
    if extra["model"] != model:
        raise AirflowSkipException(f"{asset.name}: nothing to publish (this is {extra['model']}'s)")
    outlet_events[asset].extra = dict(extra)
    return dict(extra)


def publish_landing(outlet_events, asset: Asset, events: Mapping[str, Mapping[str, Any]] | None) -> dict:
    """Emit the router's event extra for ``asset``'s dataset (``events``: dataset -> extra, see
    :func:`retrain.airflow.arrivals.route_arrivals`) as the event of ``asset``, the calling task's static outlet;
    skip the task when nothing landed for the dataset."""
    from airflow.sdk.exceptions import AirflowSkipException

    dataset = asset.extra["dataset"]
    extra = (events or {}).get(dataset)
    if extra is None:
        raise AirflowSkipException(f"{asset.name}: nothing landed for {dataset} in this run")
    outlet_events[asset].extra = dict(extra)
    return dict(extra)


def champion_moves(decisions: Iterable[Mapping[str, Any] | None]) -> list[dict]:
    """The ``<model>.champion`` event extras of the alias moves among ``decisions`` (the judges' results, in
    order; a judge that failed left none)."""
    return [champion_event_extra(d) for d in decisions if d and d.get("champion_event")]
