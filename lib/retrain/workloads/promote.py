"""The promotion step: judge one candidate event against the current champion, then register and alias.

Order of effects, so that a crash anywhere leaves a state the next run repairs: (1) comparison artifacts on
the candidate run, with the per-example outcomes the decision was made from (:mod:`retrain.decisions`),
(2) register the version (reusing one this run already registered), (3) move the
aliases with compare-and-set, (4) tag the candidate run with the decision. A candidate whose run already
carries a decision is not judged again.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import numpy as np

from retrain import catalog, decisions, promotion, registry, snapshots, tracking
from retrain.errors import CandidateError, PromotionError, is_infrastructure_error
from retrain.events import CandidateEvent

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5  # re-judgments after the champion moved; past them the task retries (ChampionChanged)


def target_frame_eval_set(run) -> tuple[Any, np.ndarray]:
    """Held-out examples logged as ``evaluation/test_features.parquet`` with a ``target`` column (regression)."""
    frame = _artifact_frame(run.info.run_id, "evaluation/test_features.parquet")
    return frame.drop(columns=["target"]), frame["target"].to_numpy()


def label_frame_eval_set(run) -> tuple[Any, np.ndarray]:
    """Held-out examples logged as ``evaluation/test_features.parquet`` with a ``label`` column (classes)."""
    frame = _artifact_frame(run.info.run_id, "evaluation/test_features.parquet")
    return frame.drop(columns=["label"]), frame["label"].to_numpy()


def up_or_down(probability: np.ndarray) -> np.ndarray:
    return (probability >= 0.5).astype(np.int64)


def seasonal_naive(run, n: int) -> np.ndarray | None:
    """The seasonal-naive forecast per test hour, as training scored it (NaN where it has none)."""
    frame = _optional_artifact_frame(run.info.run_id, "evaluation/test_predictions.parquet")
    if frame is None or "seasonal_naive" not in frame or len(frame) != n:
        return None
    return frame["seasonal_naive"].to_numpy(dtype=float)


def ticks_majority(run, n: int) -> np.ndarray | None:
    """The majority label of the training window, on every test bar."""
    import mlflow

    try:
        local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="evaluation/train.json",
                                                    tracking_uri=tracking.client().tracking_uri)
    except Exception as exc:  # MLflow raises several types for a missing artifact
        if is_infrastructure_error(exc):
            raise
        return None
    with open(local) as handle:
        label = json.load(handle).get("majority_label")
    return None if label is None else np.full(n, int(label), dtype=np.int64)


def _entry(model: str):
    try:
        return catalog.model(model)
    except KeyError as exc:
        raise CandidateError(f"candidate event names model {model!r}, which the catalog does not hold: {exc}") from None


def evaluation_set_loader(model: str) -> Callable[[Any], tuple[Any, np.ndarray]]:
    """The loader of a candidate's held-out examples (inputs, targets), from the model's catalog entry."""
    return catalog.load(_entry(model).evaluation_set)


def baseline_for(model: str) -> Callable[[Any, int], np.ndarray | None] | None:
    """The naive baseline's per-example predictions on the held-out examples (None: the model has none)."""
    target = _entry(model).baseline
    return catalog.load(target) if target else None


def postprocess_for(model: str) -> Callable[[np.ndarray], np.ndarray]:
    """How the model's raw output becomes the predicted label (identity unless the catalog names one)."""
    target = _entry(model).postprocess
    return catalog.load(target) if target else (lambda output: output)


def evaluation_set(model: str, data: Mapping[str, Any], snapshot, n: int) -> dict:
    """The identity of the versioned held-out set a decision was made on: dataset, snapshot version and
    sha256 (and partition), which part of it, how many drops it holds, and n; ``label`` is its one-line form."""
    drops = snapshot.manifest.get("drops") if snapshot is not None else None
    identity = {"dataset": snapshot.dataset if snapshot is not None else data.get("dataset"),
                "version": data.get("version"), "sha256": data.get("sha256"), "partition": data.get("partition"),
                "held_out": catalog.MODELS[model].held_out if model in catalog.MODELS else "test split",
                "drops": len(drops) if drops else None, "n": int(n)}
    where = f" partition {identity['partition']}" if identity["partition"] else ""
    grown = f", {identity['drops']} drops" if identity["drops"] else ""
    identity["label"] = (f"{identity['dataset']}{where} @ {identity['version']} "
                         f"(sha256 {str(identity['sha256'])[:12]}): {identity['held_out']}{grown}, n={n}")
    return identity


def _artifact_frame(run_id: str, path: str):
    import mlflow
    import pandas as pd

    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path,
                                                tracking_uri=tracking.client().tracking_uri)
    return pd.read_parquet(local)


def _optional_artifact_frame(run_id: str, path: str):
    """The artifact as a frame, or None when the run has no such artifact (infrastructure errors raise)."""
    try:
        return _artifact_frame(run_id, path)
    except Exception as exc:  # MLflow raises several types for a missing artifact
        if is_infrastructure_error(exc):
            raise
        return None


def _predict(model_uri: str, inputs) -> np.ndarray:
    import mlflow

    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except Exception as exc:  # MLflow raises several types for unloadable models
        if is_infrastructure_error(exc):
            raise  # the server or the network: Airflow retries with backoff
        raise CandidateError(f"model {model_uri} cannot be loaded: {exc}") from exc
    output = np.asarray(model.predict(inputs))
    # classifiers return one score per class: the prediction is the best-scoring class
    return output.argmax(axis=1) if output.ndim == 2 and output.shape[1] > 1 else output.reshape(len(output))


def _candidate_run(run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        run = tracking.client().get_run(run_id)
    except MlflowException as exc:
        if registry._not_found(exc):
            raise CandidateError(f"candidate event names MLflow run {run_id!r}, which does not exist") from None
        raise
    if run.info.status in ("FAILED", "KILLED"):
        raise CandidateError(f"candidate run {run_id} has status {run.info.status}; only FINISHED runs are judged")
    if run.info.status != "FINISHED":
        raise PromotionError(f"candidate run {run_id} has status {run.info.status}; only FINISHED runs are judged")
    return run


def candidate_event(model: str, run_id: str | None = None) -> dict:
    """The candidate event a run recorded (``retrain.candidate_event``): run ``run_id``'s, else the newest
    finished candidate run's of ``model`` (CandidateError when there is none, or the run is another model's)."""
    from retrain import assets

    entry = _entry(model)
    if run_id is None:
        experiment = tracking.client().get_experiment_by_name(
            tracking.experiment_name(assets.DATA_ASSETS[entry.dataset].workload, entry.dataset))
        runs = [] if experiment is None else tracking.client().search_runs(
            [experiment.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
            filter_string=f"tags.`retrain.model_name` = '{model}' and attributes.status = 'FINISHED'")
        if not runs:
            raise CandidateError(f"{model}: no finished candidate run to judge (rule: a candidate is an MLflow run "
                                 "of its training workload)")
        run_id = runs[0].info.run_id
    run = _candidate_run(run_id)
    recorded = run.data.tags.get("retrain.candidate_event")
    if not recorded:
        raise CandidateError(f"MLflow run {run_id} records no candidate event (tag retrain.candidate_event)")
    event = CandidateEvent.read(json.loads(recorded), f"run {run_id}'s candidate").extra()
    if event.get("model") != model:
        raise CandidateError(f"MLflow run {run_id} is a candidate of {event.get('model')!r}, not of {model!r}")
    return event


MOVED = ("promoted", "first_model")  # outcomes whose version became champion
REJUDGE = ("expired",)  # recorded outcomes that do not stop a new judgment (the champion moved while waiting)


def judge(event: Mapping[str, Any], coordinates: Mapping[str, Any]) -> dict:
    """Decide on one candidate event. Returns the decision with the version it registered, if any.

    The comparison runs outside the model's registry lock; the lock is taken only to re-read the champion and,
    if it is still the one compared with, register and move. A champion that moved meanwhile means the
    candidate is judged again against the new one, never moved over it. ``champion_event`` in the result says
    whether this Airflow run made (or completed) the alias move, so it, and only it, emits the champion event.
    """
    event = CandidateEvent.read(event, "the judged candidate").extra()
    model, run_id = event["model"], event["run_id"]
    policy = promotion.policy_for(catalog.MODELS[model].policy_name if model in catalog.MODELS else model)
    run = _candidate_run(run_id)
    recorded = run.data.tags.get("promotion.decision")
    if recorded and recorded not in REJUDGE:
        log.info("candidate run %s already judged: %s", run_id, recorded)
        summary = json.loads(run.data.tags.get("promotion.summary", "{}"))
        # a retry of the run that moved the alias (crashed before its event went out) emits it; others do not
        ours = summary.get("airflow_run_id") == coordinates.get("run_id") and summary.get("outcome") in MOVED
        return _result(model, run_id, summary, event) | {"repeated": True, "champion_event": ours}

    repaired = _complete_interrupted_move(model, run, event, coordinates)
    if repaired is not None:
        return repaired

    data = event.get("data") or {}
    snapshot = snapshots.from_uri(data["uri"])
    snapshots.verify(snapshot, data.get("sha256"))
    inputs, actual = evaluation_set_loader(model)(run)
    postprocess = postprocess_for(model)
    candidate_pred = postprocess(_predict(event["model_uri"], inputs))
    window_end = data.get("window_end")
    baseline = baseline_for(model)
    baseline_pred = baseline(run, len(actual)) if baseline is not None else None
    verdict = run.data.tags.get("quality.verdict", "unknown")
    held_out = evaluation_set(model, data, snapshot, len(actual))

    champion = registry.alias_version(model, registry.CHAMPION)
    for _ in range(MAX_ATTEMPTS):
        compared = champion.version if champion else None
        champion_window = champion.tags.get("data.window_end") if champion is not None else None
        if window_end and champion_window and window_end < champion_window:
            summary = {"outcome": "rejected", "promote": False, "comparison": None, "model": model,
                       "candidate_run_id": run_id, "compared_champion": compared,
                       "data_version": data.get("version"), "data_sha256": data.get("sha256"),
                       "evaluation_set": held_out,
                       "reasons": [f"trained on a window ending {window_end}, older than the champion's "
                                   f"({champion_window}); stale windows are never promoted (backfill policy)"]}
            _log_comparison(run_id, summary, policy)
            return _record(run, model, summary, event, coordinates)
        champion_pred = (postprocess(_predict(f"models:/{model}/{champion.version}", inputs))
                         if champion is not None else None)
        decision = promotion.judge_outcomes(policy, actual, candidate_pred, champion=champion_pred,
                                            baseline=baseline_pred, quality_verdict=verdict)
        summary = decision.as_dict() | {"model": model, "candidate_run_id": run_id, "compared_champion": compared,
                                        "data_version": data.get("version"), "data_sha256": data.get("sha256"),
                                        "window_end": window_end, "evaluation_set": held_out,
                                        "record": promotion.record_tags(decision.as_dict())}
        outcomes = decisions.Outcomes(actual, candidate_pred, champion_pred, baseline_pred)
        with registry.champion_lock(model):
            tags = tracking.client().get_run(run_id).data.tags
            judged = tags.get("promotion.decision")
            if judged and judged not in REJUDGE:  # another promotion of this same candidate decided meanwhile
                log.info("candidate run %s was judged meanwhile (%s) by another promotion run", run_id, judged)
                summary = json.loads(tags.get("promotion.summary", "{}"))
                return _result(model, run_id, summary, event) | {"repeated": True, "champion_event": False}
            now = registry.alias_version(model, registry.CHAMPION)
            if (now.version if now else None) != compared:
                log.warning("%s: champion moved from version %s to %s while run %s was judged; judging again",
                            model, compared, now.version if now else None, run_id)
                champion = now
                continue
            _log_comparison(run_id, summary, policy)
            decisions.log(run_id, outcomes, summary, policy, quality_verdict=verdict)
            if not decision.promote:
                return _record(run, model, summary, event, coordinates)
            version = registry.register(model, event["model_uri"], run_id, _version_tags(summary, run, coordinates),
                                        _markdown(summary, policy))
            summary["version"] = version.version
            if policy.require_approval:
                registry.set_alias(model, registry.CHALLENGER, version.version)
                summary |= {"outcome": "awaiting_approval", "promote": False,
                            "review_markdown": _markdown(summary, policy),
                            "approval_timeout_hours": policy.approval_timeout_hours}
                return _record(run, model, summary, event, coordinates)
            move = registry.move_champion(model, version.version, expected_champion=compared, action="promote",
                                          by=f"airflow:{coordinates.get('dag_id')}",
                                          reason="; ".join(decision.reasons), extra=_move_extra(run_id, coordinates))
            summary |= {"previous_champion": move.previous_champion, "champion_event": True}
            return _record(run, model, summary, event, coordinates)
    raise registry.ChampionChanged(model, compared, champion.version if champion else None)


def _move_extra(run_id: str, coordinates: Mapping[str, Any]) -> dict:
    return {"candidate_run_id": run_id, "airflow_dag_id": coordinates.get("dag_id"),
            "airflow_run_id": coordinates.get("run_id")}


def _complete_interrupted_move(model: str, run, event: Mapping[str, Any], coordinates: Mapping[str, Any]) -> dict | None:
    """A crash after the alias move and before the decision was recorded: this run's version is already
    champion. Complete the move (its audit entry, the record on the run, the champion event) instead of
    judging the candidate against itself."""
    run_id = run.info.run_id
    with registry.champion_lock(model):
        mine = registry.version_for_run(model, run_id)
        champion = registry.alias_version(model, registry.CHAMPION)
        if mine is None or champion is None or champion.version != mine.version:
            return None
        move = registry.move_champion(model, mine.version, expected_champion=None, action="promote",
                                      by=f"airflow:{coordinates.get('dag_id')}",
                                      reason="completed after an interruption", extra=_move_extra(run_id, coordinates))
        tags = mine.tags
        summary = {"outcome": tags.get("decision", "promoted"), "promote": True, "version": mine.version,
                   "model": model, "candidate_run_id": run_id, "compared_champion": move.previous_champion,
                   "previous_champion": move.previous_champion, "data_version": tags.get("data.version"),
                   "data_sha256": tags.get("data.sha256"), "champion_event": True,
                   "evaluation_set": {"label": tags["eval_set"]} if tags.get("eval_set") else None,
                   "reasons": [r for r in tags.get("decision.reasons", "").split(" | ") if r]
                   + ["alias move completed by a retry after an interruption"]}
        log.warning("%s: version %s of run %s was already champion (an interrupted promotion); completed it",
                    model, mine.version, run_id)
        return _record(run, model, summary, event, coordinates)


def approve(model: str, version: str, *, approved: bool, by: str, comment: str, expected_champion: str | None,
            run_id: str, coordinates: Mapping[str, Any] | None = None) -> dict:
    """Apply a reviewer's answer to a challenger: approval moves ``champion``; rejection records who and why.

    An approval of a challenger whose comparison is stale (the champion moved while it waited) moves nothing:
    the challenger expires with the reason recorded, and its run may be judged again (``expired`` is not a
    final decision). Applying the same answer twice changes nothing.
    """
    client = tracking.client()
    coordinates = coordinates or {}
    with registry.champion_lock(model):
        current = registry.alias_version(model, registry.CHAMPION)
        if approved and current is not None and current.version == str(version):
            # an earlier application of this approval moved it (the task retried after a crash): complete it
            move = registry.move_champion(model, version, expected_champion=expected_champion, action="approve",
                                          by=by, reason=comment or "approved", extra=_move_extra(run_id, coordinates))
            outcome = {"outcome": "promoted", "promote": True, "version": version,
                       "previous_champion": move.previous_champion}
        elif approved and (current.version if current else None) != expected_champion:
            reason = (f"champion moved from version {expected_champion} to "
                      f"{current.version if current else None} while version {version} awaited approval; "
                      "the comparison is stale, so the candidate is judged again")
            client.set_model_version_tag(model, version, "approval.expired", reason)
            registry.delete_alias(model, registry.CHALLENGER)
            outcome = {"outcome": "expired", "promote": False, "version": version, "reason": reason}
        elif approved:
            move = registry.move_champion(model, version, expected_champion=expected_champion, action="approve",
                                          by=by, reason=comment or "approved", extra=_move_extra(run_id, coordinates))
            registry.delete_alias(model, registry.CHALLENGER)
            outcome = {"outcome": "promoted", "promote": True, "version": version,
                       "previous_champion": move.previous_champion}
        else:
            client.set_model_version_tag(model, version, "approval.rejected_by", by)
            client.set_model_version_tag(model, version, "approval.reason", comment or "rejected")
            registry.delete_alias(model, registry.CHALLENGER)
            outcome = {"outcome": "rejected", "promote": False, "version": version}
        client.set_model_version_tag(model, version, "decision", outcome["outcome"])
        client.set_model_version_tag(model, version, "approval.by", by)
        client.set_tag(run_id, "promotion.approval", json.dumps({"approved": approved, "by": by, "comment": comment}))
        summary = json.loads(client.get_run(run_id).data.tags.get("promotion.summary", "{}"))
        summary |= {k: v for k, v in outcome.items() if k != "reason"} | {"airflow_run_id": coordinates.get("run_id")}
        if outcome.get("reason"):
            summary["reasons"] = [outcome["reason"]]
        client.set_tag(run_id, "promotion.summary", json.dumps(summary, default=str))
        client.set_tag(run_id, "promotion.decision", outcome["outcome"])
    return outcome


def review_request(decision: Mapping[str, Any]) -> tuple[dict, dict]:
    """(ApprovalOperator kwargs, details to apply the answer) for a challenger awaiting approval."""
    model, version = decision["model"], decision["version"]
    if not decision.get("review_markdown"):  # a re-run of a waiting promotion: the comparison is on the version
        decision = dict(decision) | {"review_markdown": tracking.client().get_model_version(model, version).description}
    kwargs = {"subject": f"Promote {model} version {version} to champion?",
              "body": decision.get("review_markdown", "") + f"\n\nMLflow: model `{model}`, version {version}, "
                      f"candidate run `{decision['candidate_run_id']}`."}
    hours = decision.get("approval_timeout_hours") or promotion.policy_for(model).approval_timeout_hours
    kwargs["response_timeout"] = timedelta(hours=float(hours))
    details = {"model": model, "version": version, "expected_champion": decision.get("compared_champion"),
               "run_id": decision["candidate_run_id"], "metrics": decision.get("metrics", {}),
               "event": decision.get("event", {})}
    return kwargs, details


def _version_tags(summary: dict, run, coordinates: Mapping[str, Any]) -> dict[str, str]:
    c = summary.get("comparison") or {}
    tags = {
        "decision": summary["outcome"],
        "decision.reasons": " | ".join(summary["reasons"])[:4900],
        "candidate_run_id": summary["candidate_run_id"],
        "retrain.candidate_run_id": summary["candidate_run_id"],
        "previous_champion_version": str(summary.get("compared_champion") or ""),
        "data.version": str(summary.get("data_version") or ""),
        "data.sha256": str(summary.get("data_sha256") or ""),
        "data.window_end": str(summary.get("window_end") or ""),
        "eval_set": str((summary.get("evaluation_set") or {}).get("label") or ""),
        "quality.verdict": run.data.tags.get("quality.verdict", "unknown"),
        "airflow.dag_id": str(coordinates.get("dag_id", "")),
        "airflow.run_id": str(coordinates.get("run_id", "")),
    }
    if c and c.get("against", "champion") == "champion":
        tags |= {
            "metric": c["metric"],
            f"metric.{c['metric']}.candidate": f"{c['candidate']:.6g}",
            f"metric.{c['metric']}.champion": f"{c['champion']:.6g}",
            "delta": f"{c['delta']:+.6g}",
            "delta.ci": f"[{c['ci_low']:+.6g}, {c['ci_high']:+.6g}]",
            "p_value": f"{c['p_value']:.4g}",
            "n_eval": str(c["n"]),
        }
    tags |= {f"decision.{k}": v for k, v in (summary.get("record") or {}).items()}
    return {k: v for k, v in tags.items() if v != ""}


def _markdown(summary: dict, policy: promotion.PromotionPolicy) -> str:
    c = summary.get("comparison")
    lines = [f"## Decision: **{summary['outcome'].replace('_', ' ')}**", ""]
    lines += [f"- {r}" for r in summary["reasons"]]
    lines += ["", f"Data: snapshot `{summary.get('data_version')}` (sha256 `{str(summary.get('data_sha256'))[:12]}…`); "
              f"candidate run `{summary['candidate_run_id']}`."]
    if summary.get("evaluation_set"):
        lines += ["", f"Evaluation set (held out, never trained on): {summary['evaluation_set']['label']}."]
    if c:
        level = round(policy.confidence * 100)
        first = c.get("against") == "baseline"
        other = "naive baseline" if first else f"champion (v{summary.get('compared_champion')})"
        lines += ["", f"| | candidate | {other} | Δ (candidate − {other.split(' (')[0]}) |", "|---|---|---|---|",
                  f"| **{c['metric']}** | {c['candidate']:.4f} | {c['champion']:.4f} | {c['delta']:+.4f} "
                  f"({level}% CI [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}], p={c['p_value']:.3g}) |"]
        for metric, g in c["guardrails"].items():
            lines.append(f"| {metric} (guardrail, tolerance {g['tolerance']}) | {g['candidate']:.4f} | {g['champion']:.4f} | "
                         f"{g['candidate'] - g['champion']:+.4f} |")
        lines += ["", f"Paired on n={c['n']} held-out examples; test: {c['test']}."]
        if c.get("training_sd"):
            low, high = c["extra"]["evaluation_ci"]
            lines += ["", f"The CI counts the retraining spread as well (training_sd {c['training_sd']:.4g}: two retrains "
                          f"of one recipe differ by that much on their own); the evaluation alone gives "
                          f"[{low:+.4f}, {high:+.4f}]."]
        power = summary.get("power") or {}
        if power:
            powered = {True: "yes", False: "**no: inconclusive**", None: "no minimum applies"}[power.get("powered")]
            needs = f" (needs n ≥ {power['required_n']})" if power.get("required_n") is not None else ""
            lines += ["", f"**Power:** n={power['n']}; minimum detectable effect {power['mde']:.4g} at "
                          f"{power['power']:.0%} power; min_improvement {power['min_improvement']:.4g}{needs}; "
                          f"large enough: {powered}."]
        if "both_right" in (c.get("extra") or {}):
            e, who = c["extra"], "baseline" if first else "champion"
            lines += ["", "| paired outcome | count |", "|---|---|",
                      f"| both right | {e['both_right']} |", f"| only candidate right | {e['candidate_only_right']} |",
                      f"| only {who} right | {e['champion_only_right']} |", f"| both wrong | {e['both_wrong']} |"]
    if not c or c.get("against") == "baseline":
        lines += ["", "No champion to compare with: judged against the run's own naive baseline."]
    return "\n".join(lines) + "\n"


def _log_comparison(run_id: str, summary: dict, policy: promotion.PromotionPolicy) -> None:
    client = tracking.client()
    client.log_text(run_id, _markdown(summary, policy), "promotion/comparison.md")
    client.log_text(run_id, json.dumps(summary, indent=2, default=str), "promotion/comparison.json")
    c = summary.get("comparison")
    if c:
        client.log_image(run_id, _plot(c, policy), "promotion/comparison.png")


def _plot(c: dict, policy: promotion.PromotionPolicy):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    other = "naive baseline" if c.get("against") == "baseline" else "champion"
    left.bar([other, "candidate"], [c["champion"], c["candidate"]], color=["#888", "#2a7"])
    left.set_title(c["metric"])
    right.errorbar([0], [c["delta"]], yerr=[[c["delta"] - c["ci_low"]], [c["ci_high"] - c["delta"]]], fmt="o", capsize=8)
    right.axhline(0, color="black", linewidth=0.6)
    right.set_xticks([])
    right.set_title(f"Δ candidate − {other} ({round(policy.confidence * 100)}% CI)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _record(run, model: str, summary: dict, event: Mapping[str, Any], coordinates: Mapping[str, Any]) -> dict:
    client = tracking.client()
    run_id = run.info.run_id
    client.set_tag(run_id, "promotion.reasons", " | ".join(summary["reasons"])[:4900])
    if summary.get("version"):
        client.set_tag(run_id, "promotion.version", str(summary["version"]))
    for key, value in (summary.get("record") or {}).items():  # n, MDE, powered, Δ, CI, p: what `retrain decision` checks
        client.set_tag(run_id, f"promotion.{key}", value)
    if (summary.get("evaluation_set") or {}).get("label"):
        client.set_tag(run_id, "promotion.eval_set", summary["evaluation_set"]["label"])
    brief = {k: summary.get(k) for k in ("outcome", "promote", "version", "compared_champion", "previous_champion",
                                         "approval_timeout_hours", "power", "evaluation_set")}
    brief |= {"model": model, "candidate_run_id": run_id, "reasons": summary["reasons"][:5],
              "airflow_run_id": coordinates.get("run_id")}
    client.set_tag(run_id, "promotion.summary", json.dumps(brief, default=str)[:7900])
    client.set_tag(run_id, "promotion.decision", summary["outcome"])  # last: marks the candidate as judged
    return _result(model, run_id, summary, event)


def _result(model: str, run_id: str, summary: dict, event: Mapping[str, Any]) -> dict:
    """A decision as the promotion DAG reads it: the same keys on the first judgment and on a repeat."""
    champion_uri = f"models:/{model}/{summary['version']}" if summary.get("version") else None
    return {"champion_event": False, "reasons": []} | summary | {
        "model": model, "candidate_run_id": run_id, "champion_model_uri": champion_uri,
        "metrics": dict(event.get("metrics", {})), "event": dict(event)}
