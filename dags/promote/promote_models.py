"""
### promote_models

**Trigger:** any candidate-model asset event (`<model>.candidate`). Runs one at a time, so two promotions
of the same model never interleave. A manual run may name a candidate with the `candidate_run_id` param.

**Per candidate (mapped):** load the candidate run and the current `champion`, score both on the candidate's
held-out examples (paired), decide by the model's policy in `configs/promotion.yaml` (primary metric,
minimum improvement, guardrails, minimum evaluation size, paired bootstrap CI or McNemar), write the
comparison on the candidate run, then either register the version and move `previous_champion` and
`champion` (compare-and-set), register it as `challenger` for policies that require approval, or record the
rejection and register nothing.

**Produces:** a `<model>.champion` asset event for every model whose champion changed.
"""

from __future__ import annotations

import functools
import operator

import pendulum
from airflow.sdk import DAG, AssetAlias, Param, task

from retrain import assets, orchestration

CANDIDATES = [orchestration.candidate_asset(model) for model in assets.MODELS]
CHAMPIONS = AssetAlias(name="retrain_champions", group="model")

with DAG(
    dag_id="promote_models",
    schedule=functools.reduce(operator.or_, CANDIDATES),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    doc_md=__doc__,
    params={
        "workload": "promotion",
        "candidate_run_id": Param(None, type=["null", "string"], description="MLflow run of a candidate to judge"),
    },
    **orchestration.dag_kwargs("promotion"),
):

    @task(inlets=CANDIDATES)
    @orchestration.permanent_errors_fail_fast
    def collect_candidates(**context) -> list[dict]:
        """The candidate events this run judges."""
        return orchestration.candidate_events(context)

    @task(outlets=[CHAMPIONS])
    @orchestration.permanent_errors_fail_fast
    def judge(event: dict, *, outlet_events=None, **context) -> dict:
        """Decision for one candidate; registers and aliases it when it wins."""
        from retrain.workloads import promote

        decision = promote.judge(event, orchestration.run_coordinates(context))
        if decision["outcome"] in ("promoted", "first_model") and not decision.get("repeated"):
            outlet_events[CHAMPIONS].add(
                orchestration.champion_asset(decision["model"]),
                extra={"model": decision["model"], "version": decision["version"],
                       "model_uri": decision["champion_model_uri"], "run_id": decision["candidate_run_id"],
                       "previous_champion": decision.get("previous_champion"), "metrics": decision["metrics"]},
            )
        return decision

    judge.expand(event=collect_candidates())
