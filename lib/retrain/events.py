"""Asset-event extras (design contract 2) as types, and choosing which data event a run acts on.

:class:`DataEvent` (a committed snapshot), :class:`CandidateEvent` (a candidate model) and
:class:`ChampionEvent` (an alias move) carry one schema version (:data:`EVENT_SCHEMA_VERSION`). Events are
built only through them (:meth:`extra` is the dict an asset event or an MLflow tag carries) and validated
when they are read (:meth:`read`: the kind's error, naming each missing or wrong key, otherwise). Keys beyond
the contract are kept (a growing series' time range, the versions a run supersedes, who approved a move).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from retrain.assets import EVENT_SCHEMA_VERSION
from retrain.errors import CandidateError, RetrainError, SnapshotError

DATA_EVENT_KEYS = ("schema", "dataset", "uri", "version", "sha256", "rows", "source_files")


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True, coerce_numbers_to_str=True)

    schema_version: Literal[1] = Field(EVENT_SCHEMA_VERSION, alias="schema")
    error: ClassVar[type[Exception]] = RetrainError

    @classmethod
    def read(cls, extra: Mapping[str, Any], what: str = ""):
        """The event an extra holds; the kind's error naming every missing or wrong key otherwise."""
        try:
            return cls.model_validate(dict(extra))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" + ("" if e["type"] == "missing" else
                                                                  f" (observed {e['input']!r})")
                for e in exc.errors())
            raise cls.error(f"{what or 'an'} event extra must be a schema-{EVENT_SCHEMA_VERSION} {cls.__name__} "
                            f"({problems}; got keys {sorted(extra)})") from None

    def extra(self) -> dict:
        """The dict an asset event (or an MLflow tag) carries."""
        return self.model_dump(mode="json", by_alias=True)


class DataEvent(_Event):
    """A committed curated snapshot (a partition's version for partitioned datasets)."""

    error: ClassVar[type[Exception]] = SnapshotError

    dataset: str
    uri: str
    version: str
    sha256: str
    rows: int = Field(ge=0)
    partition: str | None = None
    source_files: list[str]


class CandidateEvent(_Event):
    """A candidate model a training run logged, for promotion to judge."""

    error: ClassVar[type[Exception]] = CandidateError

    model: str
    dataset: str
    run_id: str
    experiment_id: str
    model_uri: str
    metrics: dict[str, float]
    primary_metric: str
    data: dict[str, Any]  # the data event's uri, version, sha256, rows, partition (+ a window's partitions)
    quality_verdict: str


class ChampionEvent(_Event):
    """An alias move: ``version`` became the champion of ``model`` (promotion, approval or rollback)."""

    model: str
    version: str
    model_uri: str
    previous_champion: str | None = None
    run_id: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def of(cls, model: str, version: str, **fields: Any) -> ChampionEvent:
        return cls(model=model, version=str(version), model_uri=f"models:/{model}/{version}", **fields)


def check_data_event(extra: Mapping[str, Any], dataset: str) -> dict:
    """The extra as a validated data event's dict, or a SnapshotError naming what is missing or wrong."""
    event = DataEvent.read(extra, dataset)
    if event.dataset != dataset:
        raise SnapshotError(f"{dataset} event extra names dataset {event.dataset!r} (rule: a run reads its own "
                            f"dataset's events)")
    return event.extra()


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
