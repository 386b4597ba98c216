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

from retrain import locks, tracking
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


def champion_lock(name: str):
    """The critical section of every alias move of one model (promotion, approval, rollback, repair).

    Inside it, read the champion again before moving it: the comparison made outside is only a proposal.
    Re-entrant within a thread, so a step that holds it can call another that takes it.
    """
    return locks.named_lock(f"registry.{name}")


def _audit(name: str, entry: dict) -> dict:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **entry}
    tracking.client().set_registered_model_tag(name, f"audit.{stamp}", json.dumps(entry, sort_keys=True))
    return entry


def last_move(name: str) -> dict | None:
    """The newest audit entry of a model, or None (read it holding :func:`champion_lock` to rely on it)."""
    entries = history(name)
    return entries[-1] if entries else None


def set_alias(name: str, alias: str, version: str) -> None:
    tracking.client().set_registered_model_alias(name, alias, version)


def delete_alias(name: str, alias: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        tracking.client().delete_registered_model_alias(name, alias)
    except MlflowException as exc:
        if not _not_found(exc):
            raise


@dataclass(frozen=True)
class Move:
    """One alias move as it was audited: ``repaired`` when a retry completed a move a crash interrupted."""

    champion: str
    previous_champion: str | None
    entry: dict
    repaired: bool = False


def move_champion(name: str, new_version: str, *, expected_champion: str | None, action: str, by: str,
                  reason: str, extra: dict | None = None) -> Move:
    """Compare-and-set: point ``champion`` at ``new_version`` only if it still points at ``expected_champion``.

    Takes :func:`champion_lock`. Order of effects: ``previous_champion``, then ``champion``, then the audit
    entry. A retry after a crash between them completes the move: when ``champion`` already points at
    ``new_version`` and the newest audit entry does not say so, the entry is written now (with the
    ``previous_champion`` the interrupted move set), so every move is audited exactly once.

    Raises :class:`ChampionChanged` when another move happened since the comparison, so the caller judges
    again against the champion now in service.
    """
    with champion_lock(name):
        current = alias_version(name, CHAMPION)
        current_version = current.version if current else None
        if current_version == new_version:
            last = last_move(name)
            if last is not None and str(last.get("champion")) == new_version:
                return Move(new_version, last.get("previous_champion"), last)
            previous = alias_version(name, PREVIOUS)
            previous_version = previous.version if previous else None
            entry = _audit(name, {"action": action, "champion": new_version, "previous_champion": previous_version,
                                  "by": by, "reason": reason, "repaired": True, **(extra or {})})
            return Move(new_version, previous_version, entry, repaired=True)
        if current_version != expected_champion:
            raise ChampionChanged(name, expected_champion, current_version)
        if current_version is not None:
            set_alias(name, PREVIOUS, current_version)
        set_alias(name, CHAMPION, new_version)
        entry = _audit(name, {"action": action, "champion": new_version, "previous_champion": current_version,
                              "by": by, "reason": reason, **(extra or {})})
        return Move(new_version, current_version, entry)


class ChampionChanged(RegistryError):
    def __init__(self, name: str, expected: str | None, observed: str | None):
        self.expected, self.observed = expected, observed
        super().__init__(f"{name}: champion moved during promotion (compared against version {expected}, "
                         f"now {observed}); the candidate must be re-evaluated")


class NothingToRollBack(RegistryError):
    """No ``previous_champion``: a rollback has nothing to go back to (one already happened, or none moved)."""


PENDING_ROLLBACK = "rollback.pending"


def rollback(name: str, *, by: str | None = None, reason: str, expect: str | None = None) -> Move:
    """Move ``champion`` back to ``previous_champion``, under :func:`champion_lock`.

    Not a toggle: the rolled-back version is tagged ``rolled_back`` and ``previous_champion`` is cleared, so a
    second rollback is refused until a new move sets it again. ``expect`` is a compare-and-set on the champion
    in service (refused with :class:`ChampionChanged` when it differs). The intent is written first (a
    registered-model tag), so a rollback interrupted half-way is completed by the next call, not repeated.
    """
    client = tracking.client()
    with champion_lock(name):
        pending = client.get_registered_model(name).tags.get(PENDING_ROLLBACK)
        if pending:
            return _finish_rollback(name, json.loads(pending), repaired=True)
        champion, previous = alias_version(name, CHAMPION), alias_version(name, PREVIOUS)
        if expect is not None and (champion is None or champion.version != str(expect)):
            raise ChampionChanged(name, str(expect), champion.version if champion else None)
        if champion is None:
            raise NothingToRollBack(f"{name}: nothing to roll back: no version is champion")
        if previous is None or previous.version == champion.version:
            last = next((e for e in reversed(history(name)) if e.get("action") == "rollback"), None)
            since = (f"; the last rollback ({last['at']}, by {last.get('by')}) moved champion from "
                     f"version {last.get('previous_champion')} to {last.get('champion')}") if last else ""
            raise NothingToRollBack(f"{name}: nothing to roll back to: version {champion.version} is champion and "
                                    f"no previous_champion is set{since}")
        intent = {"champion": previous.version, "rolled_back": champion.version, "by": by or getpass.getuser(),
                  "reason": reason, "at": time.time()}
        client.set_registered_model_tag(name, PENDING_ROLLBACK, json.dumps(intent, sort_keys=True))
        return _finish_rollback(name, intent)


def _finish_rollback(name: str, intent: dict, *, repaired: bool = False) -> Move:
    """The idempotent rest of a rollback whose intent is recorded (each step checks before it writes)."""
    client = tracking.client()
    target, rolled_back = intent["champion"], intent["rolled_back"]
    client.set_model_version_tag(name, rolled_back, "rolled_back", json.dumps(
        {"by": intent["by"], "reason": intent["reason"], "at": intent["at"]}))
    set_alias(name, CHAMPION, target)
    last = last_move(name)
    if last is not None and last.get("action") == "rollback" and last.get("intent_at") == intent["at"]:
        entry = last
    else:
        entry = _audit(name, {"action": "rollback", "champion": target, "previous_champion": rolled_back,
                              "by": intent["by"], "reason": intent["reason"], "intent_at": intent["at"],
                              **({"repaired": True} if repaired else {})})
    delete_alias(name, PREVIOUS)
    client.delete_registered_model_tag(name, PENDING_ROLLBACK)
    return Move(target, rolled_back, entry, repaired=repaired)


def history(name: str) -> list[dict] | None:
    """Every alias move recorded for a registered model, oldest first; None when no version of it is registered."""
    from mlflow.exceptions import MlflowException

    try:
        model = tracking.client().get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return [json.loads(v) for k, v in sorted((model.tags or {}).items()) if k.startswith("audit.")]
