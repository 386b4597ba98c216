"""MLflow Model Registry operations: aliases (never stages), decisions on versions, and an audit trail.

Aliases: ``champion`` (in service), ``previous_champion`` (rollback target), ``challenger`` (registered,
awaiting approval). MLflow keeps no alias history, so every alias move is also appended to the registered
model's tags as ``audit.<UTC timestamp>`` (JSON), which :func:`history` reads back.
"""

from __future__ import annotations

import getpass
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from retrain import tracking
from retrain.errors import RetrainError

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous_champion", "challenger"


class RegistryError(RetrainError):
    """The registry is not in the state an operation needs (e.g. no previous champion to roll back to)."""


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    run_id: str | None
    source: str
    tags: dict

    @classmethod
    def of(cls, mv) -> "Version":
        return cls(name=mv.name, version=str(mv.version), run_id=mv.run_id, source=mv.source, tags=dict(mv.tags or {}))


def _not_found(exc: Exception) -> bool:
    text = str(exc)
    return "RESOURCE_DOES_NOT_EXIST" in text or "not found" in text.lower() or "does not exist" in text.lower()


def alias_version(name: str, alias: str) -> Version | None:
    """The version an alias points to, or None (no model, no alias, or the version was deleted)."""
    from mlflow.exceptions import MlflowException

    try:
        return Version.of(tracking.client().get_model_version_by_alias(name, alias))
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise


def ensure_registered_model(name: str, description: str = "") -> None:
    from mlflow.exceptions import MlflowException

    client = tracking.client()
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if not _not_found(exc):
            raise
        try:
            client.create_registered_model(name, description=description or None)
        except MlflowException as again:
            if "ALREADY_EXISTS" not in str(again):
                raise


def version_for_run(name: str, run_id: str) -> Version | None:
    """The version already registered from this run (a crashed promotion left it behind), if any."""
    from mlflow.exceptions import MlflowException

    try:
        versions = tracking.client().search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise
    live = [v for v in versions if getattr(v, "current_stage", None) != "Deleted_Internal"]
    return Version.of(sorted(live, key=lambda v: int(v.version))[0]) if live else None


def register(name: str, model_uri: str, run_id: str, tags: dict[str, str], description: str) -> Version:
    """Register the candidate's model as a new version (or reuse the one this run already registered)."""
    import mlflow

    existing = version_for_run(name, run_id)
    if existing is None:
        ensure_registered_model(name)
        mv = mlflow.register_model(model_uri, name, tags=tags, await_registration_for=60)
        # register_model with a models:/ URI may not record the run; keep it in a tag for version_for_run
        version = str(mv.version)
        if not mv.run_id:
            tracking.client().set_model_version_tag(name, version, "retrain.candidate_run_id", run_id)
    else:
        version = existing.version
        for key, value in tags.items():
            tracking.client().set_model_version_tag(name, version, key, value)
    tracking.client().update_model_version(name, version, description=description)
    return Version.of(tracking.client().get_model_version(name, version))


def _audit(name: str, entry: dict) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **entry}
    tracking.client().set_registered_model_tag(name, f"audit.{stamp}", json.dumps(entry, sort_keys=True))


def set_alias(name: str, alias: str, version: str) -> None:
    tracking.client().set_registered_model_alias(name, alias, version)


def move_champion(name: str, new_version: str, *, expected_champion: str | None, action: str, by: str,
                  reason: str, extra: dict | None = None) -> str | None:
    """Compare-and-set: point ``champion`` at ``new_version`` only if it still points at ``expected_champion``.

    Returns the previous champion's version. Raises :class:`ChampionChanged` when another promotion moved the
    alias since the comparison, so the caller re-evaluates against the new champion.
    """
    current = alias_version(name, CHAMPION)
    current_version = current.version if current else None
    if current_version != expected_champion:
        raise ChampionChanged(name, expected_champion, current_version)
    if current_version == new_version:
        return current_version
    if current_version is not None:
        set_alias(name, PREVIOUS, current_version)
    set_alias(name, CHAMPION, new_version)
    _audit(name, {"action": action, "champion": new_version, "previous_champion": current_version, "by": by,
                  "reason": reason, **(extra or {})})
    return current_version


class ChampionChanged(RegistryError):
    def __init__(self, name: str, expected: str | None, observed: str | None):
        self.expected, self.observed = expected, observed
        super().__init__(f"{name}: champion moved during promotion (compared against version {expected}, "
                         f"now {observed}); the candidate must be re-evaluated")


def rollback(name: str, *, by: str | None = None, reason: str) -> tuple[str, str]:
    """Move ``champion`` back to ``previous_champion``. Returns (new champion, rolled-back version)."""
    champion, previous = alias_version(name, CHAMPION), alias_version(name, PREVIOUS)
    if champion is None or previous is None:
        raise RegistryError(f"{name}: rollback needs both aliases 'champion' and 'previous_champion' "
                            f"(observed champion={champion and champion.version}, previous_champion={previous and previous.version})")
    by = by or getpass.getuser()
    set_alias(name, CHAMPION, previous.version)
    set_alias(name, PREVIOUS, champion.version)
    client = tracking.client()
    client.set_model_version_tag(name, champion.version, "rolled_back", json.dumps({"by": by, "reason": reason,
                                                                                      "at": time.time()}))
    _audit(name, {"action": "rollback", "champion": previous.version, "previous_champion": champion.version,
                  "by": by, "reason": reason})
    return previous.version, champion.version


def history(name: str) -> list[dict]:
    """Every alias move recorded for a registered model, oldest first."""
    model = tracking.client().get_registered_model(name)
    return [json.loads(v) for k, v in sorted((model.tags or {}).items()) if k.startswith("audit.")]
