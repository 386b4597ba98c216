"""The household-power slice in-process: ingest_power then tabular_ml_training with dag.test().

One isolated Airflow metadata DB and MLflow store (see conftest). The DAGs are the real ones from dags/.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from retrain import storage
from retrain.settings import get_settings

DAYS = 40  # the default config needs 7 warm-up + 14 train + 7 validation + 10 test days


def _states(dag_run) -> dict[str, str]:
    from inprocess import task_states

    return task_states(dag_run)


def _land(tmp: Path, name: str, data: bytes) -> None:
    from retrain.ingest import landing

    source = tmp / name
    source.write_bytes(data)
    landing.land("household_power", str(source))


@pytest.fixture(scope="module")
def dags(airflow_db):
    from inprocess import load_dags

    return load_dags()


@pytest.fixture(scope="module")
def power_file() -> bytes:
    from retrain.data.power import generate_power

    return generate_power(DAYS * 1440, seed=7)


@pytest.fixture(scope="module")
def first_chain(dags, power_file, tmp_path_factory):
    """Land one file, run ingest, then training. Returns the two DagRuns and the events they emitted."""
    from inprocess import asset_events

    tmp = tmp_path_factory.mktemp("landing-src")
    _land(tmp, "household_power_consumption.txt", power_file)
    ingest_run = dags.get_dag("ingest_power").test()
    data_event = asset_events("household_power")[-1]
    train_run = dags.get_dag("tabular_ml_training").test()
    candidate = asset_events("household_power_lgbm.candidate")[-1]
    return {"ingest": ingest_run, "train": train_run, "data_event": data_event, "candidate": candidate}


def test_ingest_publishes_the_snapshot_event(first_chain, power_file):
    assert str(first_chain["ingest"].state) == "success", _states(first_chain["ingest"])
    event = first_chain["data_event"]
    extra = event["extra"]
    assert event["source_dag_id"] == "ingest_power"
    assert set(extra) >= {"schema", "uri", "version", "sha256", "rows", "partition", "source_files"}
    assert extra["schema"] == 1 and extra["partition"] is None
    assert extra["rows"] == DAYS * 1440
    assert extra["source_files"] == ["household_power_consumption.txt"]
    assert extra["uri"].startswith("file://") and f"version={extra['version']}" in extra["uri"]
    snapshot_dir = storage.from_uri(extra["uri"])
    manifest = json.loads(Path(snapshot_dir, "manifest.json").read_text())
    assert manifest["sha256"] == extra["sha256"]
    assert manifest["source_files"][0]["bytes"] == len(power_file)
    # the landed file left the landing zone only for the archive
    assert not any(Path(get_settings().landing("household_power")).iterdir())
    assert Path(get_settings().archive("household_power", extra["version"], "household_power_consumption.txt")).read_bytes() == power_file


def test_training_logs_a_candidate_with_lineage(first_chain):
    import mlflow

    assert str(first_chain["train"].state) == "success", _states(first_chain["train"])
    data = first_chain["data_event"]["extra"]
    candidate = first_chain["candidate"]
    extra = candidate["extra"]
    assert candidate["source_dag_id"] == "tabular_ml_training"
    assert extra["model"] == "household_power_lgbm" and extra["quality_verdict"] == "passed"
    assert extra["data"]["version"] == data["version"] and extra["data"]["sha256"] == data["sha256"]

    client = mlflow.MlflowClient(get_settings().mlflow_tracking_uri)
    run = client.get_run(extra["run_id"])
    assert run.info.status == "FINISHED"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "tabular_ml_training.household_power"
    metrics = run.data.metrics
    for key in ("test_rmse", "test_mae", "baseline_seasonal_naive_rmse", "baseline_seasonal_naive_mae"):
        assert math.isfinite(metrics[key]) and metrics[key] > 0
        assert extra["metrics"][key] == pytest.approx(metrics[key])
    assert metrics["test_rmse"] < metrics["baseline_seasonal_naive_rmse"], "LightGBM must beat seasonal naive"
    assert len(client.get_metric_history(run.info.run_id, "iter_valid_l2")) > 5  # per-iteration metrics
    tags = run.data.tags
    assert tags["airflow.dag_id"] == "tabular_ml_training"
    assert tags["airflow.run_id"] == first_chain["train"].run_id
    assert tags["data.version"] == data["version"] and tags["data.sha256"] == data["sha256"]
    assert tags["data.asset_uri"] == data["uri"]
    assert tags["quality.verdict"] == "passed"
    assert tags["code.version"]
    assert "seasonal naive" in tags["mlflow.note.content"]
    assert run.data.params["lightgbm.num_leaves"] == "31"
    assert {i.dataset.digest for i in run.inputs.dataset_inputs} == {data["sha256"][:20]}
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "quality")} | \
        {f.path for f in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"quality/quality_report.md", "quality/quality_report.json", "evaluation/residuals.png",
            "evaluation/feature_importance.png", "evaluation/test_predictions.parquet"} <= artifacts


def test_candidate_model_loads_and_predicts(first_chain):
    import mlflow
    import pandas as pd

    extra = first_chain["candidate"]["extra"]
    model = mlflow.pyfunc.load_model(extra["model_uri"])
    names = model.metadata.get_input_schema().input_names()
    frame = pd.DataFrame({n: [1.0, 2.0] for n in names})
    for column in ("hour", "day_of_week", "month", "is_weekend"):
        frame[column] = [1, 2]
    assert len(model.predict(frame)) == 2


def test_relanding_the_same_file_emits_no_second_event(first_chain, dags, power_file, tmp_path):
    from inprocess import asset_events

    before = len(asset_events("household_power"))
    _land(tmp_path, "same-content-other-name.txt", power_file)
    run = dags.get_dag("ingest_power").test()
    assert _states(run)["ingest[0]"] == "skipped"
    assert len(asset_events("household_power")) == before
    versions = [p.name for p in Path(get_settings().curated("household_power")).glob("version=*")]
    assert versions == [f"version={first_chain['data_event']['extra']['version']}"]


def test_bad_power_drop_fails_the_gate_and_produces_no_candidate(first_chain, dags, tmp_path):
    from retrain.data.power import generate_power
    from inprocess import asset_events

    text = generate_power(DAYS * 1440, seed=8).decode().splitlines()
    fields = text[500].split(";")
    fields[2] = "-1.500"  # negative active power
    text[500] = ";".join(fields)
    _land(tmp_path, "negative.txt", ("\n".join(text) + "\n").encode())
    candidates_before = len(asset_events("household_power_lgbm.candidate"))

    ingest = dags.get_dag("ingest_power").test()
    assert str(ingest.state) == "success"  # parseable: the gate, not the parser, judges values
    train = dags.get_dag("tabular_ml_training").test()
    states = _states(train)
    assert str(train.state) == "failed"
    assert states["quality_gate"] == "failed" and states["log_candidate"] == "upstream_failed"
    gate_ti = next(ti for ti in train.get_task_instances() if ti.task_id == "quality_gate")
    assert gate_ti.try_number == 1  # bad data is not retried
    assert len(asset_events("household_power_lgbm.candidate")) == candidates_before
    version = asset_events("household_power")[-1]["extra"]["version"]
    reports = list(Path(get_settings().work("train")).rglob("quality_report.md"))
    failed = [r for r in reports if version in r.read_text()]
    assert failed and "active power is not negative" in failed[0].read_text() and "-1.5" in failed[0].read_text()


def test_unparseable_drop_is_quarantined_with_a_reason(first_chain, dags, tmp_path):
    bad = b"Date,Time,Global_active_power\n16/12/2006,17:24:00,4.216\n"
    _land(tmp_path, "comma.csv", bad)
    run = dags.get_dag("ingest_power").test()
    assert str(run.state) == "failed"
    quarantine = Path(get_settings().quarantine("household_power"))
    assert (quarantine / "comma.csv").read_bytes() == bad
    reason = json.loads((quarantine / "comma.csv.reason.json").read_text())
    assert reason["rule"] == "fields must be separated by ';'" and "','" in reason["observed"]


def test_a_retry_after_archiving_resumes_and_still_emits(tmp_path):
    """Crash after the snapshot commit and archive, before the task recorded success: the retry re-emits."""
    from retrain.data.power import generate_power
    from retrain.ingest import power

    _land(tmp_path, "retry.txt", generate_power(2000, seed=99))
    first = power.ingest_file("retry.txt", "run-crashed")
    assert first.status == "ingested"
    again = power.ingest_file("retry.txt", "run-crashed")  # the same run's retry
    assert again.status == "resumed" and again.emits_event
    assert again.snapshot.version == first.snapshot.version
