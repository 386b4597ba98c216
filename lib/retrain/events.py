"""Asset-event extras (design contract 2): validation and choosing which event a run acts on."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from retrain.assets import EVENT_SCHEMA_VERSION
from retrain.errors import SnapshotError

DATA_EVENT_KEYS = ("schema", "uri", "version", "sha256", "rows", "source_files")


def check_data_event(extra: Mapping[str, Any], dataset: str) -> dict:
    """The extra as a dict, or a SnapshotError naming what is missing or wrong."""
    missing = [k for k in DATA_EVENT_KEYS if k not in extra]
    if missing:
        raise SnapshotError(f"{dataset} event extra must carry {list(DATA_EVENT_KEYS)} (missing {missing}; got {dict(extra)})")
    if extra["schema"] != EVENT_SCHEMA_VERSION:
        raise SnapshotError(f"{dataset} event extra schema must be {EVENT_SCHEMA_VERSION} (observed {extra['schema']!r})")
    return dict(extra)


def snapshot_order(extra: Mapping[str, Any]) -> tuple:
    """Sort key of the snapshot an event names, by the data's own time (its manifest; see
    :func:`retrain.freshness.data_order`)."""
    from retrain import freshness, snapshots

    return freshness.data_order(snapshots.from_uri(extra["uri"]).manifest)


def newest(events: Sequence[Mapping[str, Any]], dataset: str,
           order: Callable[[Mapping[str, Any]], Any] | None = None) -> tuple[dict, list[str]]:
    """The newest of the triggering events and the versions it supersedes (in arrival order).

    Newest by the data's own time (a power snapshot's time range, a partition's date; commit order for data
    with no time axis), never by the order the events were emitted: June data landed before March data is
    still the newer."""
    if not events:
        raise SnapshotError(f"no {dataset} event to act on")
    checked = [check_data_event(e, dataset) for e in events]
    order = order or snapshot_order
    keys = {e["version"]: order(e) for e in checked}
    chosen = max(reversed(checked), key=lambda e: keys[e["version"]])  # ties: the later event
    superseded = list(dict.fromkeys(e["version"] for e in checked if e["version"] != chosen["version"]))
    return chosen, superseded
