"""Failure classes: errors no retry can fix fail the task at once; infrastructure errors are left to Airflow's
retries with backoff. Every task of every DAG goes through the same wrapper."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from retrain.airflow import failures
from retrain.errors import CandidateError, PromotionError, is_infrastructure_error

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_every_python_task_fails_fast_on_permanent_errors(dagbag):
    """A task body that can raise DataQualityError, SnapshotError, CandidateError, ... is wrapped, so it never
    spends its retries on them."""
    marker = failures.permanent_errors_fail_fast(lambda: None).__code__
    unwrapped = []
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            callable_ = getattr(task, "python_callable", None)
            if callable_ is not None and getattr(callable_, "__code__", None) is not marker:
                unwrapped.append(f"{dag.dag_id}.{task.task_id}")
    assert dagbag.import_errors == {}
    assert unwrapped == []


def test_a_missing_candidate_run_fails_at_once():
    from airflow.sdk.exceptions import AirflowFailException

    from retrain.workloads import promote

    event = {"schema": 1, "model": "household_power_lgbm", "dataset": "household_power", "run_id": "0" * 32,
             "experiment_id": "1", "model_uri": "runs:/x/model", "metrics": {}, "primary_metric": "test_rmse",
             "data": {}, "quality_verdict": "passed"}
    judge = failures.permanent_errors_fail_fast(promote.judge)
    with pytest.raises(AirflowFailException, match=f"CandidateError: .*MLflow run '{'0' * 32}', which does not exist"):
        judge(event, {"dag_id": "promote_models", "run_id": "test"})
    with pytest.raises(AirflowFailException, match="CandidateError: the judged candidate event extra must be a "
                                                  "schema-1 CandidateEvent .*model_uri: Field required"):
        judge({k: v for k, v in event.items() if k != "model_uri"}, {"dag_id": "promote_models", "run_id": "test"})


def test_a_run_that_failed_is_permanent_and_a_running_one_is_retried():
    from retrain import tracking
    from retrain.workloads import promote

    client = tracking.client()
    experiment = client.get_experiment_by_name("failure-classes") or client.get_experiment(
        client.create_experiment("failure-classes"))
    failed = client.create_run(experiment.experiment_id)
    client.set_terminated(failed.info.run_id, "FAILED")
    running = client.create_run(experiment.experiment_id)
    with pytest.raises(CandidateError, match="has status FAILED"):
        promote._candidate_run(failed.info.run_id)
    with pytest.raises(PromotionError, match="has status RUNNING") as retried:
        promote._candidate_run(running.info.run_id)
    assert not isinstance(retried.value, failures.PERMANENT_ERRORS)


def test_a_model_that_does_not_exist_is_permanent():
    from retrain.workloads import promote

    with pytest.raises(CandidateError, match="models:/household_power_lgbm/999 cannot be loaded"):
        promote._predict("models:/household_power_lgbm/999", None)


def test_an_unreachable_mlflow_server_is_left_to_the_retries(monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from retrain.workloads import promote

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri("http://127.0.0.1:9")
    try:
        with pytest.raises(Exception) as raised:
            failures.permanent_errors_fail_fast(promote._predict)("models:/household_power_lgbm/1", None)
    finally:
        mlflow.set_tracking_uri(previous)
    assert not isinstance(raised.value, (AirflowFailException, CandidateError)), raised.value
    assert is_infrastructure_error(raised.value)


@pytest.mark.parametrize("exc, infrastructure", [
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), True),
    (TimeoutError("read timed out"), True),
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (RuntimeError("API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/get failed with exception ..."), True),
    (FileNotFoundError(errno.ENOENT, "MLmodel"), False),
    (ValueError("unsupported pickle protocol"), False),
    (ModuleNotFoundError("No module named 'torch'"), False),
])
def test_infrastructure_errors_are_told_apart(exc, infrastructure):
    assert is_infrastructure_error(exc) is infrastructure
    wrapped = RuntimeError("wrapper")
    wrapped.__cause__ = exc
    assert is_infrastructure_error(wrapped) is infrastructure
