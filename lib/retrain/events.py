"""Asset-event extras (design contract 2): validation and choosing which event a run acts on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def newest(events: Sequence[Mapping[str, Any]], dataset: str) -> tuple[dict, list[str]]:
    """The newest of the triggering events and the versions it supersedes (in arrival order)."""
    if not events:
        raise SnapshotError(f"no {dataset} event to act on")
    checked = [check_data_event(e, dataset) for e in events]
    chosen = checked[-1]
    superseded = [e["version"] for e in checked[:-1] if e["version"] != chosen["version"]]
    return chosen, superseded
