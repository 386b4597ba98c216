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
`promote_models`. The one-slot `gpu` pool keeps two trainings off one GPU; runs themselves may overlap
(with `max_active_runs=1`, events landing during a run would wait for the next event: apache/airflow#56050).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, AssetAlias, Param, task, task_group

from retrain import orchestration

WORKLOAD = "image_dl_training"
DATASETS = ("mnist", "cifar10")
ASSETS = [orchestration.data_asset(d) for d in DATASETS]
CANDIDATES = AssetAlias(name=orchestration.CANDIDATES_ALIAS, group="model")

with DAG(
    dag_id=WORKLOAD,
    schedule=ASSETS[0] | ASSETS[1],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    doc_md=__doc__,
    params={
        "workload": WORKLOAD,
        "dataset": Param(None, type=["null", "string"], enum=[None, *DATASETS], description="Manual run: dataset"),
        "version": Param(None, type=["null", "string"], description="Manual run: snapshot version (default: latest event)"),
        "supersedes": Param([], type="array", description="Versions this run supersedes (set by reconcile_freshness)"),
        "epochs": Param(None, type=["null", "integer"], minimum=1, maximum=200),
        "batch_size": Param(None, type=["null", "integer"], minimum=1, maximum=4096),
        "lr": Param(None, type=["null", "number"], exclusiveMinimum=0, maximum=1),
        "device": Param(None, type=["null", "string"], enum=[None, "auto", "cpu", "cuda"]),
    },
    **orchestration.dag_kwargs(WORKLOAD),
):

    @task(inlets=ASSETS)
    @orchestration.permanent_errors_fail_fast
    def datasets_to_train(**context) -> list[dict]:
        """One event per dataset that triggered this run (the newest of each), each claimed in the freshness
        ledger; a dataset whose snapshot another run holds or trained is left out."""
        return orchestration.image_snapshots_to_train(context, DATASETS)

    @task_group
    def pipeline(event: dict):
        @task(multiple_outputs=False)
        @orchestration.permanent_errors_fail_fast
        def quality_gate(event: dict, **context) -> dict:
            """Quality report summary; raises (no retry) when the snapshot fails its suite."""
            from retrain import workloads

            work = orchestration.work_folder(context, event["dataset"])
            return workloads.run("gate", event["dataset"], event, work)

        @task(pool="gpu", queue="gpu", multiple_outputs=False)
        @orchestration.permanent_errors_fail_fast
        def train(event: dict, gate: dict, **context) -> dict:
            """The trained CNN (resumes from the last checkpoint on retry)."""
            from retrain import workloads

            overrides = {k: context["params"].get(k) for k in ("epochs", "batch_size", "lr", "device")}
            return workloads.run("train", event["dataset"], event, orchestration.work_folder(context, event["dataset"]),
                                 overrides=overrides)

        @task(pool="gpu", queue="gpu", multiple_outputs=False)
        @orchestration.permanent_errors_fail_fast
        def evaluate(event: dict, trained: dict, **context) -> dict:
            """Test metrics, confusion matrix and the majority-class baseline."""
            from retrain import workloads

            work = orchestration.work_folder(context, event["dataset"])
            return workloads.run("evaluate", event["dataset"], event, work)

        @task(queue="gpu", outlets=[CANDIDATES], multiple_outputs=False)  # logging a PyTorch model needs torch: GPU workers have it
        @orchestration.permanent_errors_fail_fast
        def log_candidate(event: dict, gate: dict, metrics: dict, *, outlet_events=None, **context) -> dict:
            """The MLflow candidate run; emits the candidate-model event."""
            from retrain import assets, workloads

            extra = workloads.run("log_candidate", event["dataset"], event,
                                  orchestration.work_folder(context, event["dataset"]),
                                  coordinates=orchestration.run_coordinates(context), quality=gate)
            outlet_events[CANDIDATES].add(orchestration.candidate_asset(assets.model_for_dataset(event["dataset"])),
                                          extra=extra)
            return extra

        verdict = quality_gate(event)
        log_candidate(event, verdict, evaluate(event, train(event, verdict)))

    pipeline.expand(event=datasets_to_train())
