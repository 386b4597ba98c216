"""
### promote_models

**Trigger:** any candidate-model asset event (`<model>.candidate`); `promote_partitioned_models` does the
same for candidates of partition-aware training (ticks), whose events carry a partition key. Each runs one
at a time, so two promotions of the same model never interleave. A manual run may name a candidate with the `candidate_run_id` param.

**Per candidate (mapped):** `judge` on the `default` queue, or `judge_image` on the `gpu` queue for image
candidates (scoring a CNN loads PyTorch, which only GPU workers carry; no `gpu` pool slot is taken). Load the candidate run and the current `champion`, score both on the candidate's
held-out examples (paired), decide by the model's policy in `configs/promotion.yaml` (primary metric,
minimum improvement, guardrails, minimum evaluation size, paired bootstrap CI or McNemar), write the
comparison on the candidate run, then either register the version and move `previous_champion` and
`champion`, or record the rejection and register nothing. Every alias move of one model happens under that
model's registry lock and re-reads the champion inside it: a candidate whose champion moved while it was
scored is judged again against the new one. A retry after a crash at any step completes the move (one
version per candidate run, one audit entry, the champion event).

**Approval:** for policies with `require_approval: true` the version is registered with alias `challenger`
and a reviewer answers an `ApprovalOperator` whose body is the comparison. Approval moves `champion`;
rejection, or no answer before the model's `approval_timeout_hours`, records who rejected and why on the
version. A challenger whose champion moved while it waited expires with the reason recorded, and its candidate
event is emitted again, so it is judged against the new champion before a person is asked again.

**Produces:** a `<model>.champion` asset event for every move of a model's champion: a judge's move is published by
the model's `publish_champion_<model>` task once every judge of the run is done (the task is the asset's
producer in the asset graph), an approval's through the `retrain_champions` alias.
"""

from __future__ import annotations

import functools
import operator

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, AssetAlias, Param, PartitionedAssetTimetable, task

from retrain import assets
from retrain.airflow import publishing
from retrain.airflow.assets import CHAMPIONS_ALIAS, REJUDGE_ALIAS, candidate_asset, champion_asset
from retrain.airflow.champions import apply_review
from retrain.airflow.defaults import dag_kwargs
from retrain.airflow.failures import permanent_errors_fail_fast
from retrain.airflow.queues import DEFAULT_QUEUE, GPU_QUEUE, by_judge_queue
from retrain.airflow.runs import candidate_events, run_coordinates

# Candidates of partition-aware training DAGs carry their run's partition key, and partitioned events only
# trigger partition-aware DAGs: those models get their own promotion DAG, with the same tasks.
PARTITIONED = {model for model, dataset in assets.MODELS.items() if assets.DATA_ASSETS[dataset].partitioned}
CANDIDATES = [candidate_asset(model) for model in assets.MODELS if model not in PARTITIONED]
PARTITIONED_CANDIDATES = [candidate_asset(model) for model in sorted(PARTITIONED)]
CHAMPIONS = AssetAlias(name=CHAMPIONS_ALIAS, group="model")
REJUDGE = AssetAlias(name=REJUDGE_ALIAS, group="model")


def promotion_tasks(candidates: list) -> None:
    """collect -> judge (mapped), collect image candidates -> judge_image (mapped) -> review requests -> ApprovalOperator (mapped) for challengers."""

    @task(inlets=candidates)
    @permanent_errors_fail_fast
    def collect_candidates(queue: str = DEFAULT_QUEUE, **context) -> list[dict]:
        """The candidate events this run judges on ``queue`` (`gpu` for the models whose scoring loads PyTorch,
        which only GPU workers carry; `default` for the others)."""
        return by_judge_queue(candidate_events(context, candidates))[queue]

    @task(multiple_outputs=False)
    @permanent_errors_fail_fast
    def judge(event: dict, **context) -> dict:
        """Decision for one candidate; registers and aliases it when it wins."""
        from retrain.workloads import promote

        return promote.judge(event, run_coordinates(context))

    @task(trigger_rule="all_done", multiple_outputs=False)  # publish the moves made, whatever became of other judges
    @permanent_errors_fail_fast
    def champion_moves(decisions: list[dict], image_decisions: list[dict]) -> list[dict]:
        """The champion event extras of the alias moves this run's judges made (or completed after a crash)."""
        return publishing.champion_moves([*(decisions or []), *(image_decisions or [])])

    @task(multiple_outputs=False)
    @permanent_errors_fail_fast
    def publish_champion(move: dict, *, model: str, outlet_events=None) -> dict:
        """The `<model>.champion` event of one move (skipped for another model's move)."""
        return publishing.publish(outlet_events, champion_asset(model), move)

    @task(trigger_rule="none_failed")  # a judge with no candidate to map over is skipped
    @permanent_errors_fail_fast
    def review_requests(decisions: list[dict], image_decisions: list[dict], *, ti=None) -> list[dict]:
        """One approval request per challenger awaiting review."""
        from retrain.workloads import promote

        decided = [*(decisions or []), *(image_decisions or [])]
        pending = [promote.review_request(d) for d in decided if d["outcome"] == "awaiting_approval"]
        # each challenger waits as long as its model's policy says (approval_timeout_hours)
        ti.xcom_push(key="reviews", value=[details for _, details in pending])
        return [kwargs for kwargs, _ in pending]

    collect_image_candidates = collect_candidates.override(task_id="collect_image_candidates")
    judge_image = judge.override(task_id="judge_image", queue=GPU_QUEUE)
    decisions = judge.expand(event=collect_candidates())
    image_decisions = judge_image.expand(event=collect_image_candidates(queue=GPU_QUEUE))
    ApprovalOperator.partial(
        task_id="review_challenger",
        doc="A person approves or rejects the challenger; no answer before the timeout rejects it.",
        params={"comment": Param("", type="string", description="Why (recorded on the model version)")},
        defaults=["Reject"],
        outlets=[CHAMPIONS, REJUDGE],
        post_execute=apply_review,
    ).expand_kwargs(review_requests(decisions, image_decisions))
    moves = champion_moves(decisions, image_decisions)
    for model in (c.extra["model"] for c in candidates):  # one task per model: its outlet names the producer
        publish_champion.override(task_id=f"publish_champion_{model}", outlets=[champion_asset(model)]).partial(
            model=model).expand(move=moves)


for dag_id, schedule, candidates in (
    ("promote_models", functools.reduce(operator.or_, CANDIDATES), CANDIDATES),
    ("promote_partitioned_models", PartitionedAssetTimetable(assets=functools.reduce(operator.or_, PARTITIONED_CANDIDATES)),
     PARTITIONED_CANDIDATES),
):
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        doc_md=__doc__,
        params={
            "workload": "promotion",
            "candidate_run_id": Param(None, type=["null", "string"], description="MLflow run of a candidate to judge"),
        },
        **dag_kwargs("promotion"),
    ):
        promotion_tasks(candidates)
