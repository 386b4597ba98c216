"""
### time_series_training

**Trigger:** a commit of a `ticks` partition: `ingest_ticks` asks for a run (`request_training`) unless one is
queued already, since a queued run reads every commit when it starts; the freshness reconcile asks for one
when the newest window is still untrained after its bound; a manual run may name the partition (`partition`
param). Why not one run per partition event (`PartitionedAssetTimetable`): Airflow 3.3.2 turns each pending
partition key into a queued run at the next scheduler loop, without regard to `max_active_runs`, so a
backfill of N partitions queued N runs ahead of the newest window (about 4 s each); coalesced requests keep
it at one running and one queued run, whatever N.

**Model:** LightGBM predicting the direction of the next 1-minute bar from bar features (returns,
volatility, spread, order imbalance). Why LightGBM rather than a GRU: the features are tabular bars, a
window holds a few thousand bars, the workload runs on CPU workers, and a backfill must retrain in seconds.

**Steps:** wait while a backfill is still committing newer partitions (at most `backfill_settle_seconds` after
its latest commit) → resolve the window (the K newest committed partitions) to exact (partition, version,
sha256) entries → Great Expectations gate on every partition of the window (sha256 verified) → features →
train → walk-forward evaluation on the last partition beside majority-class and persistence baselines →
MLflow run (window, versions and digest tagged) → `ticks_direction_lgbm.candidate`, partition key = the
window's last partition.

**Backfill policy:** only the newest window trains, once per exact set of versions. A run trains the newest
window when its exact versions were not trained yet (a day corrected inside it retrains it once), and
skips otherwise (a backfill of N old partitions trains nothing); runs are serialised (`max_active_runs=1`),
and `promote_models` never promotes a candidate whose window ends before the champion's.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task

from retrain.airflow.assets import candidate_asset, data_asset
from retrain.airflow.claims import claim_window
from retrain.airflow.defaults import dag_kwargs
from retrain.airflow.failures import permanent_errors_fail_fast
from retrain.airflow.runs import run_coordinates, work_folder

WORKLOAD = "time_series_training"
TICKS = data_asset("ticks")
CANDIDATE = candidate_asset("ticks_direction_lgbm")

with DAG(
    dag_id=WORKLOAD,
    schedule=None,  # asked for by ingest_ticks (coalesced), the freshness reconcile, or a person
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    doc_md=__doc__,
    params={"workload": WORKLOAD, "partition": Param(None, type=["null", "string"], description="Manual run: YYYY-MM-DD")},
    **dag_kwargs(WORKLOAD),
):

    @task.sensor(poke_interval=3, timeout=3600, mode="poke")
    @permanent_errors_fail_fast
    def wait_for_backfill() -> bool:
        """True once no backfill is still committing partitions newer than the newest committed one."""
        from retrain.workloads import timeseries

        return timeseries.ready_to_resolve()

    @task(inlets=[TICKS], multiple_outputs=False)
    @permanent_errors_fail_fast
    def resolve_window(*, ti=None, dag_run=None, params=None, triggering_asset_events=None) -> dict:
        """The window's exact (partition, version, sha256) entries; skips the run when the backfill policy says so."""
        from airflow.sdk.exceptions import AirflowSkipException

        from retrain import workloads

        try:  # a manual run has none
            events = [dict(e.extra) for e in sorted(triggering_asset_events[TICKS], key=lambda e: e.timestamp)]
        except (KeyError, TypeError):
            events = []
        ticks = workloads.for_dataset("ticks")
        window = ticks.resolve("ticks", events, ticks.dataset_config("ticks"),
                               key=dag_run.partition_key or params["partition"])
        if not window["train"]:
            raise AirflowSkipException(window["reason"])
        if not claim_window({"ti": ti, "dag_run": dag_run}, window):
            raise AirflowSkipException("this window is trained or being trained by another run (freshness claim)")
        return window

    @task(multiple_outputs=False)
    @permanent_errors_fail_fast
    def quality_gate(window: dict, **context) -> dict:
        """One quality report per partition; raises (no retry) when any partition fails."""
        from retrain import workloads

        return workloads.run("gate", "ticks", window, work_folder(context, "ticks"))

    @task(multiple_outputs=False)
    @permanent_errors_fail_fast
    def features(window: dict, gate: dict, **context) -> dict:
        """Bar features of the window, split walk-forward."""
        from retrain import workloads

        return workloads.run("prepare", "ticks", window, work_folder(context, "ticks"))

    @task(multiple_outputs=False)
    @permanent_errors_fail_fast
    def train(window: dict, split: dict, **context) -> dict:
        """The LightGBM direction model."""
        from retrain import workloads

        return workloads.run("train", "ticks", window, work_folder(context, "ticks"))

    @task(multiple_outputs=False)
    @permanent_errors_fail_fast
    def evaluate(window: dict, trained: dict, **context) -> dict:
        """Accuracy, log loss and AUC on the test partition beside the baselines."""
        from retrain import workloads

        return workloads.run("evaluate", "ticks", window, work_folder(context, "ticks"))

    @task(outlets=[CANDIDATE], multiple_outputs=False)
    @permanent_errors_fail_fast
    def log_candidate(window: dict, gate: dict, metrics: dict, *, outlet_events=None, **context) -> dict:
        """The MLflow candidate run; emits the candidate-model event."""
        from retrain import workloads

        extra = workloads.run("log_candidate", "ticks", window, work_folder(context, "ticks"),
                              coordinates=run_coordinates(context), quality=gate)
        outlet_events[CANDIDATE].extra = extra
        if not context["dag_run"].partition_key:  # a requested run: the candidate's key is the window's end
            outlet_events[CANDIDATE].add_partitions(window["partition"])
        return extra

    window = resolve_window()
    wait_for_backfill() >> window
    verdict = quality_gate(window)
    log_candidate(window, verdict, evaluate(window, train(window, features(window, verdict))))
