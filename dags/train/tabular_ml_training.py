"""
### tabular_ml_training

**Trigger:** every `household_power` asset event (a new curated snapshot). Manual runs may name a snapshot
with the `version` param; without one they train the snapshot of the asset's latest event.

**Steps:** Great Expectations quality gate on exactly the snapshot the event names (bad data fails at once,
no retry) → hourly features with a time-ordered split → LightGBM on CPU (`cpu` pool) → test RMSE/MAE beside a
seasonal-naive baseline → MLflow run (params, per-iteration metrics, model, plots, quality report, lineage).

**Produces:** a `household_power_lgbm.candidate` asset event carrying the MLflow run id, model URI and
metrics, which `promote_models` judges. When several snapshots land before a run starts, the run trains the
newest and records the ones it supersedes.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task

from retrain.airflow.assets import candidate_asset, data_asset
from retrain.airflow.claims import snapshot_to_train
from retrain.airflow.defaults import dag_kwargs
from retrain.airflow.failures import permanent_errors_fail_fast
from retrain.airflow.runs import run_coordinates, work_folder

WORKLOAD = "tabular_ml_training"
DATASET = "household_power"
MODEL = "household_power_lgbm"
HOUSEHOLD_POWER = data_asset(DATASET)
CANDIDATE = candidate_asset(MODEL)

with DAG(
    dag_id=WORKLOAD,
    schedule=HOUSEHOLD_POWER,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    doc_md=__doc__,
    params={
        "workload": WORKLOAD,
        "version": Param(None, type=["null", "string"], description="Snapshot version for a manual run"),
        "supersedes": Param([], type="array", description="Versions this run supersedes (set by reconcile_freshness)"),
    },
    **dag_kwargs(WORKLOAD),
):

    @task(inlets=[HOUSEHOLD_POWER], multiple_outputs=False)
    @permanent_errors_fail_fast
    def resolve_snapshot(**context) -> dict:
        """The snapshot this run trains (the newest of its events in data time), claimed in the freshness ledger;
        skips the run when another run holds it, holds a newer one, or trained it."""
        return snapshot_to_train(context, DATASET)

    @task(multiple_outputs=False)
    @permanent_errors_fail_fast
    def quality_gate(event: dict, **context) -> dict:
        """Quality report summary; raises (no retry) when the snapshot fails its suite."""
        from retrain import workloads

        return workloads.run("gate", DATASET, event, work_folder(context, DATASET))

    @task(multiple_outputs=False)
    @permanent_errors_fail_fast
    def prepare(event: dict, gate: dict, **context) -> dict:
        """Train/validation/test feature files in the run's work folder."""
        from retrain import workloads

        return workloads.run("prepare", DATASET, event, work_folder(context, DATASET))

    @task(pool="cpu", multiple_outputs=False)
    @permanent_errors_fail_fast
    def train(event: dict, features: dict, **context) -> dict:
        """A LightGBM booster (model.txt) with its per-iteration history."""
        from retrain import workloads

        return workloads.run("train", DATASET, event, work_folder(context, DATASET))

    @task(multiple_outputs=False)
    @permanent_errors_fail_fast
    def evaluate(event: dict, trained: dict, **context) -> dict:
        """Test metrics of the model and the seasonal-naive baseline, predictions and plots."""
        from retrain import workloads

        return workloads.run("evaluate", DATASET, event, work_folder(context, DATASET))

    @task(outlets=[CANDIDATE], multiple_outputs=False)
    @permanent_errors_fail_fast
    def log_candidate(event: dict, gate: dict, metrics: dict, *, outlet_events=None, **context) -> dict:
        """The MLflow candidate run; emits the candidate-model event."""
        from retrain import workloads

        extra = workloads.run("log_candidate", DATASET, event, work_folder(context, DATASET),
                              coordinates=run_coordinates(context), quality=gate)
        outlet_events[CANDIDATE].extra = extra
        return extra

    snapshot = resolve_snapshot()
    verdict = quality_gate(snapshot)
    metrics = evaluate(snapshot, train(snapshot, prepare(snapshot, verdict)))
    log_candidate(snapshot, verdict, metrics)
