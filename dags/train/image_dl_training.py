"""
### image_dl_training

**Trigger:** `mnist | cifar10` asset events. The run trains only the datasets whose events triggered it
(dynamic task mapping over them), each on the newest snapshot its events name. Manual runs are the
single-DAG proof-of-concept mode: validated params choose the dataset and override epochs, batch size,
learning rate and device.

**Per dataset:** Great Expectations gate on the snapshot's per-image statistics (bad data fails at once) →
train the dataset's CNN on the `gpu` pool and `gpu` queue (CUDA with AMP when present, else CPU; a retried
task resumes from the last epoch's checkpoint) → test accuracy, macro-F1, per-class accuracy and confusion
matrix beside a majority-class baseline → MLflow run with the model → a `<model>.candidate` event for
`promote_models`, published by the model's `publish_candidate_<model>` task (skipped in the other pipelines).
The one-slot `gpu` pool keeps two trainings off one GPU; runs themselves may overlap
(with `max_active_runs=1`, events landing during a run would wait for the next event: apache/airflow#56050).
"""

from __future__ import annotations

import functools
import operator

import pendulum
from airflow.sdk import DAG, Param, task, task_group

from retrain import assets, catalog, config
from retrain.airflow import publishing
from retrain.airflow.assets import candidate_asset, data_asset
from retrain.airflow.claims import image_snapshots_to_train
from retrain.airflow.defaults import dag_kwargs
from retrain.airflow.failures import permanent_errors_fail_fast
from retrain.airflow.runs import run_coordinates, work_folder

WORKLOAD = "image_dl_training"
DATASETS = tuple(catalog.datasets_of(WORKLOAD))  # mnist, cifar10
ASSETS = [data_asset(d) for d in DATASETS]

with DAG(
    dag_id=WORKLOAD,
    schedule=functools.reduce(operator.or_, ASSETS),  # any of them
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    doc_md=__doc__,
    params={
        "workload": WORKLOAD,
        "dataset": Param(None, type=["null", "string"], enum=[None, *DATASETS], description="Manual run: dataset"),
        "version": Param(None, type=["null", "string"], description="Manual run: snapshot version (default: latest event)"),
        "supersedes": Param([], type="array", description="Versions this run supersedes (set by reconcile_freshness)"),
        # overrides of the loop's config: the bounds are LoopConfig's (configs/image_dl_training.yaml)
        "epochs": Param(None, type=["null", "integer"], **config.param_bounds(config.LoopConfig, "epochs")),
        "batch_size": Param(None, type=["null", "integer"], **config.param_bounds(config.LoopConfig, "batch_size")),
        "lr": Param(None, type=["null", "number"], **config.param_bounds(config.LoopConfig, "lr")),
        "device": Param(None, type=["null", "string"], **config.param_bounds(config.LoopConfig, "device")),
    },
    **dag_kwargs(WORKLOAD),
):

    @task(inlets=ASSETS)
    @permanent_errors_fail_fast
    def datasets_to_train(**context) -> list[dict]:
        """One event per dataset that triggered this run (the newest of each), each claimed in the freshness
        ledger; a dataset whose snapshot another run holds or trained is left out."""
        return image_snapshots_to_train(context, DATASETS)

    @task_group
    def pipeline(event: dict):
        @task(multiple_outputs=False)
        @permanent_errors_fail_fast
        def quality_gate(event: dict, **context) -> dict:
            """Quality report summary; raises (no retry) when the snapshot fails its suite."""
            from retrain import workloads

            overrides = {k: context["params"].get(k) for k in ("epochs", "batch_size", "lr", "device")}
            work = work_folder(context, event["dataset"])  # the minimum follows the run's batch_size
            return workloads.run("gate", event["dataset"], event, work, overrides=overrides)

        @task(pool="gpu", queue="gpu", multiple_outputs=False)
        @permanent_errors_fail_fast
        def train(event: dict, gate: dict, **context) -> dict:
            """The trained CNN (resumes from the last checkpoint on retry)."""
            from retrain import workloads

            overrides = {k: context["params"].get(k) for k in ("epochs", "batch_size", "lr", "device")}
            return workloads.run("train", event["dataset"], event, work_folder(context, event["dataset"]),
                                 overrides=overrides)

        @task(pool="gpu", queue="gpu", multiple_outputs=False)
        @permanent_errors_fail_fast
        def evaluate(event: dict, trained: dict, **context) -> dict:
            """Test metrics, confusion matrix and the majority-class baseline."""
            from retrain import workloads

            work = work_folder(context, event["dataset"])
            return workloads.run("evaluate", event["dataset"], event, work)

        @task(queue="gpu", multiple_outputs=False)  # logging a PyTorch model needs torch: GPU workers have it
        @permanent_errors_fail_fast
        def log_candidate(event: dict, gate: dict, metrics: dict, **context) -> dict:
            """The MLflow candidate run, and the extra of its candidate-model event."""
            from retrain import workloads

            return workloads.run("log_candidate", event["dataset"], event, work_folder(context, event["dataset"]),
                                 coordinates=run_coordinates(context), quality=gate)

        @task(multiple_outputs=False)
        @permanent_errors_fail_fast
        def publish_candidate(extra: dict, *, model: str, outlet_events=None) -> dict:
            """The `<model>.candidate` event for promote_models (skipped in the other datasets' pipelines)."""
            return publishing.publish(outlet_events, candidate_asset(model), extra)

        verdict = quality_gate(event)
        logged = log_candidate(event, verdict, evaluate(event, train(event, verdict)))
        for model in map(assets.model_for_dataset, DATASETS):  # one task per model: its outlet names the producer
            publish_candidate.override(task_id=f"publish_candidate_{model}", outlets=[candidate_asset(model)])(
                logged, model=model)

    pipeline.expand(event=datasets_to_train())
