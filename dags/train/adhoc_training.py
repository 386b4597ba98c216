"""
### adhoc_training

**Trigger:** manual only (`schedule=None`), the single-DAG proof-of-concept mode of the design note. Params
choose the workload `kind` (`tabular` | `image` | `timeseries`), the `dataset`, the snapshot `version` (for
ticks: the window's last `partition`; default: the newest committed one), config `overrides` and the
`resources` that train and evaluate take (`cpu`: `cpu` pool; `gpu`: `gpu` pool and `gpu` queue; default:
`gpu` for images, else `cpu`).

**Overrides** mirror the dataset's block in `configs/<workload>.yaml`, nested or dotted, e.g.
`{"lightgbm.num_leaves": 15}` or `{"loop": {"epochs": 1}}` (images: only `loop.*`). The first task
validates them with the workload's pydantic config: an unknown key or an impossible value fails the run
there, without retry and before any work, with a message naming the key and the value.

**Steps:** the scheduled workloads' library code: quality gate → train → evaluate → MLflow candidate run in
the workload's experiment, tagged `retrain.trigger=adhoc` with its overrides and named `adhoc-…`.

**Publishing:** `publish: false` by default. An ad-hoc candidate comes from hand-picked data and settings that
no review saw (configs are code-reviewed, trigger params are not), so it does not reach `promote_models` on
its own. Its run still records the candidate event: trigger `promote_models` (ticks:
`promote_partitioned_models`) with `candidate_run_id` to have it judged. `publish: true` emits the `<model>.candidate` event as the scheduled DAGs do (not for ticks, whose
partition-aware promotion needs a partition key that manual runs lack).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, AssetAlias, Param, TaskGroup, task

from retrain.airflow.assets import CANDIDATES_ALIAS, candidate_asset
from retrain.airflow.defaults import dag_kwargs
from retrain.airflow.failures import permanent_errors_fail_fast
from retrain.airflow.runs import run_coordinates, work_folder
from retrain.workloads import adhoc

CANDIDATES = AssetAlias(name=CANDIDATES_ALIAS, group="model")

with DAG(
    dag_id=adhoc.DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    doc_md=__doc__,
    params={
        "workload": adhoc.DAG_ID,
        "kind": Param("tabular", type="string", enum=list(adhoc.KINDS), description="Workload to run"),
        "dataset": Param(None, type=["null", "string"], enum=[None, *adhoc.DATASETS],
                         description="Dataset (default: the workload's only one; images: mnist or cifar10)"),
        "version": Param(None, type=["null", "string"], description="Snapshot version (default: newest committed)"),
        "partition": Param(None, type=["null", "string"], pattern=r"^\d{4}-\d{2}-\d{2}$",
                           description="ticks: last partition of the window (default: newest committed)"),
        "overrides": Param({}, type="object", description="Config overrides, e.g. {\"lightgbm.num_leaves\": 15}"),
        "resources": Param(None, type=["null", "string"], enum=[None, *adhoc.RESOURCES],
                           description="cpu or gpu pool/queue (default: gpu for images, else cpu)"),
        "publish": Param(False, type="boolean", description="Emit the candidate event to promote_models"),
    },
    **dag_kwargs(adhoc.DAG_ID),
):

    @task(multiple_outputs=False)
    @permanent_errors_fail_fast
    def plan(*, params=None) -> dict:
        """The validated plan: workload, dataset, snapshot, effective config, resources; fails fast on bad params."""
        return adhoc.plan(params)

    @task(multiple_outputs=False)
    @permanent_errors_fail_fast
    def quality_gate(plan: dict, **context) -> dict:
        """Quality report summary; raises (no retry) when the data fails its suite."""
        return adhoc.gate(plan, work_folder(context, plan["dataset"]))

    @task.branch
    @permanent_errors_fail_fast
    def choose_resources(plan: dict) -> str:
        """The train task of the planned resource profile."""
        return f"on_{plan['resources']}.train"

    @task(multiple_outputs=False)
    @permanent_errors_fail_fast
    def train(plan: dict, gate: dict, **context) -> dict:
        """The trained model in the run's work folder."""
        return adhoc.train(plan, work_folder(context, plan["dataset"]))

    @task(multiple_outputs=False)
    @permanent_errors_fail_fast
    def evaluate(plan: dict, trained: dict, **context) -> dict:
        """Test metrics beside the workload's baselines."""
        return adhoc.evaluate(plan, work_folder(context, plan["dataset"]))

    @task(outlets=[CANDIDATES], trigger_rule="none_failed_min_one_success", multiple_outputs=False)
    @permanent_errors_fail_fast
    def log_candidate(plan: dict, gate: dict, *, outlet_events=None, **context) -> dict:
        """The MLflow candidate run; emits the candidate-model event only when the plan says publish."""
        work = work_folder(context, plan["dataset"])
        extra = adhoc.log_candidate(plan, gate, run_coordinates(context), work)
        if plan["publish"]:
            outlet_events[CANDIDATES].add(candidate_asset(plan["model"]), extra=extra)
        return extra

    planned = plan()
    verdict = quality_gate(planned)
    branch = choose_resources(planned)
    verdict >> branch
    evaluated = []
    for profile, slot in adhoc.RESOURCES.items():
        with TaskGroup(f"on_{profile}"):
            trained = train.override(**slot)(planned, verdict)
            branch >> trained
            evaluated.append(evaluate.override(**slot)(planned, trained))
    evaluated >> log_candidate(planned, verdict)
