"""The record of a promotion decision, and its replay (``retrain decision MODEL VERSION``).

At decision time the promotion step logs on the candidate run:

* ``promotion/outcomes.parquet``: one row per held-out example: ``actual`` and the predictions of
  ``candidate``, ``champion`` (when one was in service) and ``baseline`` (the naive baseline; NaN where it has
  none), so correctness (classifiers) and losses (regression) of all three follow;
* ``promotion/decision.json``: the policy as applied (its seed and planning spread included), n, the quality
  verdict, the champion compared with, the held-out set's identity (dataset, snapshot version, sha256, n) and
  the decision's statistics as tagged (:func:`retrain.promotion.record_tags`).

:func:`replay` downloads both, decides again with :func:`retrain.promotion.judge_outcomes` from them alone
(the function the promotion step used) and compares the statistics with the tags the version recorded
(``decision.*``), or the candidate run (``promotion.*``) for a candidate that was never registered.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrain import promotion, tracking
from retrain.errors import RetrainError

OUTCOMES, RECORD = "promotion/outcomes.parquet", "promotion/decision.json"
SCHEMA = 1


class DecisionRecordError(RetrainError):
    """A decision cannot be replayed: no such version, no recorded decision, or an artifact is missing."""


@dataclass(frozen=True)
class Outcomes:
    """Per-example predictions on the evaluation set, aligned by row."""

    actual: np.ndarray
    candidate: np.ndarray
    champion: np.ndarray | None = None
    baseline: np.ndarray | None = None

    def frame(self):
        import pandas as pd

        columns = {"actual": self.actual, "candidate": self.candidate, "champion": self.champion,
                   "baseline": self.baseline}
        return pd.DataFrame({k: np.asarray(v) for k, v in columns.items() if v is not None})

    @classmethod
    def from_frame(cls, frame) -> "Outcomes":
        get = lambda name: frame[name].to_numpy() if name in frame else None  # noqa: E731
        return cls(get("actual"), get("candidate"), get("champion"), get("baseline"))


def log(run_id: str, outcomes: Outcomes, summary: dict, policy: promotion.PromotionPolicy, *,
        quality_verdict: str) -> None:
    """Log the outcomes and the decision record on the candidate run (overwriting an earlier judgment's)."""
    client = tracking.client()
    record = {"schema": SCHEMA, "model": summary["model"], "candidate_run_id": run_id,
              "compared_champion": summary.get("compared_champion"), "quality_verdict": quality_verdict,
              "n": int(len(outcomes.actual)), "seed": policy.seed, "policy": policy.model_dump(mode="json"),
              "columns": list(outcomes.frame().columns), "outcome": summary["outcome"],
              "evaluation_set": summary.get("evaluation_set"), "tags": summary.get("record") or {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "promotion"
        folder.mkdir()
        outcomes.frame().to_parquet(folder / "outcomes.parquet", index=False)
        (folder / "decision.json").write_text(json.dumps(record, indent=2, default=str))
        client.log_artifact(run_id, str(folder / "outcomes.parquet"), "promotion")
        client.log_artifact(run_id, str(folder / "decision.json"), "promotion")


@dataclass(frozen=True)
class Replay:
    model: str
    version: str | None
    run_id: str
    policy: promotion.PromotionPolicy
    decision: promotion.Decision
    recomputed: dict  # record tags, recomputed
    recorded: dict  # record tags, as the version (or run) carries them
    notes: list[str] = field(default_factory=list)
    evaluation_set: dict | None = None  # the held-out set's identity, as recorded (None: recorded before it was)

    @property
    def mismatches(self) -> list[tuple[str, str | None, str | None]]:
        keys = sorted(set(self.recomputed) | set(self.recorded))
        return [(k, self.recorded.get(k), self.recomputed.get(k)) for k in keys
                if self.recorded.get(k) != self.recomputed.get(k)]

    @property
    def matches(self) -> bool:
        return not self.mismatches and not self.notes


def _download(model: str, where: str, run_id: str, path: str) -> Path:
    import mlflow

    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path,
                                                        tracking_uri=tracking.client().tracking_uri))
    except Exception as exc:  # MLflow raises several types for a missing artifact
        from retrain.errors import is_infrastructure_error

        if is_infrastructure_error(exc):
            raise
        raise DecisionRecordError(f"{model} {where}: candidate run {run_id} has no artifact {path} (decisions "
                                  "made before outcomes were logged cannot be replayed)") from None


def replay(model: str, version: str | None = None, *, run_id: str | None = None) -> Replay:
    """Decide again from the logged outcomes alone; see the module docstring. Give ``version`` or ``run_id``."""
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from pydantic import ValidationError

    from retrain import registry

    client = tracking.client()
    notes = []
    if version is not None:
        where = f"version {version}"
        try:
            mv = client.get_model_version(model, str(version))
        except MlflowException as exc:
            if registry._not_found(exc):
                raise DecisionRecordError(f"{model} version {version}: no such registered model version") from None
            raise
        tags = dict(mv.tags or {})
        run_id = mv.run_id or tags.get("retrain.candidate_run_id")
        recorded = {k[len("decision."):]: v for k, v in tags.items() if k.startswith("decision.") and k != "decision.reasons"}
        if not run_id:
            raise DecisionRecordError(f"{model} version {version}: no candidate run recorded (no run id)")
    else:
        where = f"run {run_id}"
        try:
            tags = client.get_run(run_id).data.tags
        except MlflowException as exc:
            if registry._not_found(exc):
                raise DecisionRecordError(f"{model} run {run_id}: no such MLflow run") from None
            raise
        recorded = {k[len("promotion."):]: v for k, v in tags.items() if k.startswith("promotion.")
                    and k[len("promotion."):] in ("judged", "against", "n", "metric", "delta", "ci", "p_value",
                                                  "mde", "powered", "required_n")}
    if "judged" not in recorded:
        raise DecisionRecordError(f"{model} {where}: no promotion decision recorded (tag "
                                  f"{'decision' if version is not None else 'promotion'}.judged is missing)")
    record = json.loads(_download(model, where, run_id, RECORD).read_text())
    outcomes = Outcomes.from_frame(pd.read_parquet(_download(model, where, run_id, OUTCOMES)))
    if record.get("schema") != SCHEMA:
        raise DecisionRecordError(f"{model} {where}: {RECORD} has schema {record.get('schema')!r}; this retrain "
                                  f"reads schema {SCHEMA}")
    if version is not None and str(record.get("compared_champion") or "") != tags.get("previous_champion_version", ""):
        notes.append(f"the run was judged again (against champion {record.get('compared_champion')}) after this "
                     f"version's decision (against {tags.get('previous_champion_version') or 'no champion'}); "
                     "the artifacts describe the later judgment")
    try:
        policy = promotion.PromotionPolicy.model_validate(record["policy"])
    except ValidationError as exc:
        raise DecisionRecordError(f"{model} {where}: the policy recorded in {RECORD} no longer validates "
                                  f"({exc.errors()[0]['msg']})") from None
    decision = promotion.judge_outcomes(policy, outcomes.actual, outcomes.candidate, champion=outcomes.champion,
                                        baseline=outcomes.baseline, quality_verdict=record["quality_verdict"])
    return Replay(model=model, version=str(version) if version is not None else None, run_id=run_id, policy=policy,
                  decision=decision, recomputed=promotion.record_tags(decision.as_dict()), recorded=recorded,
                  notes=notes, evaluation_set=record.get("evaluation_set"))
