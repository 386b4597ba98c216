"""
### time_series_training

**Trigger:** `ticks` partition events, partition-aware (`PartitionedAssetTimetable`, identity mapping): one
run per partition key. A manual run names the partition with the `partition` param.

**Model:** LightGBM predicting the direction of the next 1-minute bar from bar features (returns,
volatility, spread, order imbalance). Why LightGBM rather than a GRU: the features are tabular bars, a
window holds a few thousand bars, the workload runs on CPU workers, and a backfill must retrain in seconds.

**Steps:** resolve the window (the K most recent committed partitions up to the run's key) → Great
Expectations gate on every partition of the window → features → train → walk-forward evaluation on the
last partition beside majority-class and persistence baselines → MLflow run (window and partition keys
tagged) → `ticks_direction_lgbm.candidate`.

**Backfill policy:** only the newest window trains. A run whose partition is older than the newest committed
partition is skipped (a backfill of N old partitions trains nothing), runs are serialised
(`max_active_runs=1`), and `promote_models` never promotes a candidate whose window ends before the champion's.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, PartitionedAssetTimetable, task

from retrain import orchestration

WORKLOAD = "time_series_training"
TICKS = orchestration.data_asset("ticks")
CANDIDATE = orchestration.candidate_asset("ticks_direction_lgbm")

with DAG(
    dag_id=WORKLOAD,
    schedule=PartitionedAssetTimetable(assets=TICKS),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    doc_md=__doc__,
    params={"workload": WORKLOAD, "partition": Param(None, type=["null", "string"], description="Manual run: YYYY-MM-DD")},
    **orchestration.dag_kwargs(WORKLOAD),
):

    @task
    def resolve_window(*, dag_run=None, params=None) -> dict:
        """The window of partitions to train on; skips the run when the backfill policy says so."""
        from airflow.sdk.exceptions import AirflowSkipException

        from retrain.workloads import timeseries

        window = timeseries.resolve_window(dag_run.partition_key or params["partition"])
        if not window["train"]:
            raise AirflowSkipException(window["reason"])
        return window

    @task
    @orchestration.permanent_errors_fail_fast
    def quality_gate(window: dict, **context) -> dict:
        """One quality report per partition; raises (no retry) when any partition fails."""
        from retrain.workloads import timeseries

        return timeseries.gate(window, orchestration.work_folder(context, "ticks"))

    @task
    @orchestration.permanent_errors_fail_fast
    def features(window: dict, gate: dict, **context) -> dict:
        """Bar features of the window, split walk-forward."""
        from retrain.workloads import timeseries

        return timeseries.features(window, orchestration.work_folder(context, "ticks"))

    @task
    def train(split: dict, **context) -> dict:
        """The LightGBM direction model."""
        from retrain.workloads import timeseries

        return timeseries.train(orchestration.work_folder(context, "ticks"))

    @task
    def evaluate(trained: dict, **context) -> dict:
        """Accuracy, log loss and AUC on the test partition beside the baselines."""
        from retrain.workloads import timeseries

        return timeseries.evaluate(orchestration.work_folder(context, "ticks"))

    @task(outlets=[CANDIDATE])
    def log_candidate(window: dict, gate: dict, metrics: dict, *, outlet_events=None, **context) -> dict:
        """The MLflow candidate run; emits the candidate-model event."""
        from retrain import tracking
        from retrain.workloads import timeseries

        run = orchestration.run_coordinates(context)
        data = window["events"][-1] | {"partitions": window["window"]}
        lineage = tracking.Lineage(**run, data=data, quality=gate)
        extra = timeseries.log_candidate(lineage, orchestration.work_folder(context, "ticks"))
        outlet_events[CANDIDATE].extra = extra
        return extra

    window = resolve_window()
    verdict = quality_gate(window)
    log_candidate(window, verdict, evaluate(train(features(window, verdict))))
