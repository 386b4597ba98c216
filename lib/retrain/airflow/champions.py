"""Champion moves seen from Airflow: the ``<model>.champion`` event of a move, and a reviewer's answer applied
to a challenger (design contracts 5 and 9; the moves themselves are :mod:`retrain.workloads.promote`'s)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import AssetAlias

from retrain.airflow.assets import CHAMPIONS_ALIAS, REJUDGE_ALIAS, candidate_asset, champion_asset
from retrain.airflow.runs import run_coordinates


def champion_event_extra(decision: Mapping[str, Any], **extra: Any) -> dict:
    """The extra of the ``<model>.champion`` event of one alias move."""
    from retrain.events import ChampionEvent

    return ChampionEvent.of(decision["model"], decision["version"],
                            run_id=decision.get("candidate_run_id") or decision.get("run_id"),
                            previous_champion=decision.get("previous_champion"),
                            metrics=decision.get("metrics", {}), **extra).extra()


def emit_champion_event(outlet_events, decision: Mapping[str, Any], **extra: Any) -> None:
    """The ``<model>.champion`` event of one alias move, through the champions alias (a review's approval; the
    judges' moves are published by one task per model, see :mod:`retrain.airflow.publishing`)."""
    outlet_events[AssetAlias(name=CHAMPIONS_ALIAS)].add(champion_asset(decision["model"]),
                                                       extra=champion_event_extra(decision, **extra))


def apply_review(context: Mapping[str, Any], result: Mapping[str, Any]) -> None:
    """``post_execute`` of the review ApprovalOperator: apply the reviewer's answer to the challenger.

    Approval moves ``champion`` (under the model's registry lock) and publishes the champion event; rejection,
    or no answer before the timeout (the operator's default option), records who rejected and why on the
    version. An approval whose comparison went stale (the champion moved meanwhile) expires instead, and the
    candidate event is emitted again so the candidate is judged against the champion now in service.
    """
    from retrain.workloads import promote

    ti = context["ti"]
    details = ti.xcom_pull(task_ids="review_requests", key="reviews")[max(ti.map_index, 0)]
    chosen = (result or {}).get("chosen_options") or ["Reject"]
    user = (result or {}).get("responded_by_user") or {}
    by = user.get("name") or user.get("id") or "timeout (default: reject)"
    comment = ((result or {}).get("params_input") or {}).get("comment", "")
    outcome = promote.approve(details["model"], details["version"], approved=chosen[0] == "Approve", by=str(by),
                              comment=comment, expected_champion=details["expected_champion"],
                              run_id=details["run_id"], coordinates=run_coordinates(context))
    if outcome["promote"]:
        emit_champion_event(context["outlet_events"], details | outcome, approved_by=str(by))
    elif outcome["outcome"] == "expired" and details.get("event"):
        context["outlet_events"][AssetAlias(name=REJUDGE_ALIAS)].add(
            candidate_asset(details["model"]), extra=details["event"] | {"rejudge": outcome["reason"]})
