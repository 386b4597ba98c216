"""The ad-hoc training DAG in-process: validated params choose workload, data, overrides and resources."""

from __future__ import annotations

import json
import shutil
import time
from datetime import date
from pathlib import Path

import pytest

from retrain.settings import get_settings

DAYS = 12  # enough for the shortened split the tabular overrides ask for
OVERRIDES = {
    "lightgbm.num_leaves": 7,
    "lightgbm": {"n_estimators": 60},
    "features": {"lags_hours": [1, 2, 24], "rolling_hours": [3]},
    "seasonal_naive_lag_hours": 24,
    "split": {"test_days": 2, "valid_days": 2, "min_train_days": 4},
}
TICK_DAYS = ["2026-02-02", "2026-02-03", "2026-02-04"]  # older than the tick DAG tests' partitions


def _client():
    import mlflow

    return mlflow.MlflowClient(get_settings().mlflow_tracking_uri)


def _ti(dag_run, task_id: str):
    return next(ti for ti in dag_run.get_task_instances() if ti.task_id == task_id)


@pytest.fixture(scope="module", autouse=True)
def leaves_the_session_as_found(airflow_db):
    """Other modules of the session count snapshots and registered versions: set their snapshots aside while
    this module lands its own, then restore them and drop the models this module registered."""
    curated = [Path(get_settings().curated(d)) for d in ("household_power", "mnist", "ticks")]
    aside = {folder: folder.with_name(f".{folder.name}.aside") for folder in curated if folder.exists()}
    for folder, moved in aside.items():
        folder.rename(moved)
    models = {m.name for m in _client().search_registered_models()}
    yield
    for folder in curated:
        shutil.rmtree(folder, ignore_errors=True)
        if folder in aside:
            aside[folder].rename(folder)
    for model in _client().search_registered_models():
        if model.name not in models:
            _client().delete_registered_model(model.name)


@pytest.fixture(scope="module")
def dags(airflow_db):
    from inprocess import load_dags

    return load_dags()


def _trigger(conf: dict):
    """One run of a freshly parsed DAG, as a worker would parse it: in-process ``dag.test()`` writes a run's conf
    into the DAG object's Param objects, so a second run on the same object would inherit the first's params."""
    from inprocess import load_dags

    return load_dags().get_dag("adhoc_training").test(run_conf=conf)


@pytest.fixture(scope="module")
def power_snapshots(tmp_path_factory):
    """Two committed power snapshots; the second is the newest."""
    from retrain.data.power import generate_power
    from retrain.ingest import landing, power

    tmp = tmp_path_factory.mktemp("adhoc-power")
    committed = []
    for seed in (31, 32):
        source = tmp / f"adhoc-power-{seed}.txt"
        source.write_bytes(generate_power(DAYS * 1440, seed=seed))
        landing.land("household_power", str(source))
        committed.append(power.ingest_file(source.name, f"adhoc-test-{seed}").snapshot)
        time.sleep(1.1)  # commit times have one-second resolution; same-second snapshots are ambiguous
    return committed


@pytest.fixture(scope="module")
def tabular_run(power_snapshots):
    from inprocess import asset_events

    before = len(asset_events("household_power_lgbm.candidate"))
    run = _trigger({"kind": "tabular", "overrides": OVERRIDES, "publish": True})
    return {"run": run, "events": asset_events("household_power_lgbm.candidate")[before:]}


def test_tabular_run_trains_the_newest_snapshot_with_the_overrides(tabular_run, power_snapshots):
    from inprocess import task_states

    run = tabular_run["run"]
    states = task_states(run)
    assert str(run.state) == "success", states
    assert states["on_cpu.train"] == "success" and states["on_gpu.train"] == "skipped"
    assert (_ti(run, "on_cpu.train").pool, _ti(run, "on_cpu.train").queue) == ("cpu", "default")

    extra = _ti(run, "log_candidate").xcom_pull(task_ids="log_candidate")
    mlflow_run = _client().get_run(extra["run_id"])
    params, tags = mlflow_run.data.params, mlflow_run.data.tags
    assert params["lightgbm.num_leaves"] == "7" and params["lightgbm.n_estimators"] == "60"  # the overrides
    assert params["split.test_days"] == "2" and params["lightgbm.learning_rate"] == "0.05"  # the rest: configs/
    assert mlflow_run.data.metrics["test_examples"] == 48  # two test days of hourly examples
    assert tags["retrain.trigger"] == "adhoc" and tags["airflow.dag_id"] == "adhoc_training"
    assert json.loads(tags["retrain.adhoc.overrides"])["lightgbm.num_leaves"] == 7
    assert tags["mlflow.runName"].startswith("adhoc-household_power_lgbm-")
    assert tags["data.version"] == power_snapshots[-1].version  # default: the newest committed snapshot
    assert tags["quality.verdict"] == "passed"
    assert "**Ad hoc**" in tags["mlflow.note.content"] and "`lightgbm.num_leaves = 7`" in tags["mlflow.note.content"]
    experiment = _client().get_experiment(mlflow_run.info.experiment_id)
    assert experiment.name == "tabular_ml_training.household_power"  # beside the scheduled runs, told apart by tag

    # publish: true -> the candidate event promote_models is scheduled on, as the scheduled DAG emits it
    events = tabular_run["events"]
    assert len(events) == 1 and events[0]["source_dag_id"] == "adhoc_training"
    assert events[0]["extra"]["run_id"] == extra["run_id"] and events[0]["extra"]["model"] == "household_power_lgbm"


def test_a_named_version_is_planned(power_snapshots):
    from retrain.workloads import adhoc

    planned = adhoc.plan({"kind": "tabular", "version": power_snapshots[0].version})
    assert planned["event"]["version"] == power_snapshots[0].version
    assert planned["resources"] == "cpu" and planned["publish"] is False


@pytest.mark.parametrize(("overrides", "message"), [
    ({"lightgbm.num_leaf": 15}, "lightgbm.num_leaf = 15: unknown key"),
    ({"lightgbm": {"num_leaves": 1}}, "lightgbm.num_leaves = 1: Input should be greater than or equal to 2"),
    ({"split.test_days": "soon"}, "split.test_days = 'soon': Input should be a valid integer"),
    ({"model": "other_model"}, "model = 'other_model' for household_power: not overridable"),
])
def test_bad_override_is_rejected_with_key_and_value(overrides, message, power_snapshots):
    from retrain.errors import ConfigError
    from retrain.workloads import adhoc

    with pytest.raises(ConfigError, match="^adhoc_training override") as info:
        adhoc.plan({"kind": "tabular", "overrides": overrides})
    assert message in str(info.value)


def test_bad_override_fails_the_run_before_any_work(power_snapshots, capfd):
    from inprocess import task_states

    work = Path(get_settings().work("train", "adhoc_training"))
    folders_before = set(work.iterdir()) if work.exists() else set()
    run = _trigger({"kind": "tabular", "overrides": {"lightgbm.num_leaves": 1}})
    states = task_states(run)
    assert str(run.state) == "failed"
    assert states["plan"] == "failed" and states["quality_gate"] == "upstream_failed"
    assert states["on_cpu.train"] == "upstream_failed" and states["log_candidate"] == "upstream_failed"
    assert _ti(run, "plan").try_number == 1  # bad params are not retried
    assert "lightgbm.num_leaves = 1: Input should be greater than or equal to 2" in capfd.readouterr().out
    assert (set(work.iterdir()) if work.exists() else set()) == folders_before  # nothing was written


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    from retrain.data import mnist
    from inprocess import asset_events
    from retrain.ingest import images, landing

    drop = tmp_path_factory.mktemp("adhoc-mnist") / "mnist-adhoc"
    drop.mkdir()
    for name, data in mnist.generate_mnist(400, 200, seed=5, gz=True).items():
        (drop / name).write_bytes(data)
    landing.land("mnist", str(drop))
    snapshot = images.ingest_drop("mnist", drop.name, "adhoc-test-mnist").snapshot
    before = len(asset_events("mnist_cnn.candidate"))
    run = _trigger({
        "kind": "image", "dataset": "mnist", "overrides": {"loop": {"epochs": 1, "batch_size": 32}, "loop.device": "cpu"}})
    return {"run": run, "snapshot": snapshot, "events": asset_events("mnist_cnn.candidate")[before:]}


def test_image_run_on_tiny_mnist_trains_on_the_gpu_pool(image_run):
    from inprocess import task_states

    run = image_run["run"]
    states = task_states(run)
    assert str(run.state) == "success", states
    assert states["on_gpu.train"] == "success" and states["on_cpu.train"] == "skipped"
    assert (_ti(run, "on_gpu.train").pool, _ti(run, "on_gpu.train").queue) == ("gpu", "gpu")  # images: gpu by default

    extra = _ti(run, "log_candidate").xcom_pull(task_ids="log_candidate")
    mlflow_run = _client().get_run(extra["run_id"])
    assert mlflow_run.data.params["loop.epochs"] == "1" and mlflow_run.data.params["loop.batch_size"] == "32"
    assert mlflow_run.data.params["loop.device"] == "cpu" and mlflow_run.data.metrics["epochs_run"] == 1
    assert mlflow_run.data.tags["data.version"] == image_run["snapshot"].version
    assert mlflow_run.data.tags["retrain.adhoc.published"] == "false"
    # not published by default: no event for promote_models, but the run records the event it would have carried
    assert image_run["events"] == []
    assert json.loads(mlflow_run.data.tags["retrain.candidate_event"])["run_id"] == extra["run_id"]


def test_an_unpublished_candidate_is_judged_when_promotion_names_its_run(dags, image_run):
    extra = _ti(image_run["run"], "log_candidate").xcom_pull(task_ids="log_candidate")
    run = dags.get_dag("promote_models").test(run_conf={"candidate_run_id": extra["run_id"]})
    assert str(run.state) == "success"
    decision = _ti(run, "judge_image").xcom_pull(task_ids="judge_image", map_indexes=0)
    assert decision["candidate_run_id"] == extra["run_id"] and decision["model"] == "mnist_cnn"
    assert _client().get_run(extra["run_id"]).data.tags["promotion.decision"] == decision["outcome"]


def test_timeseries_run_trains_the_window_its_override_asks_for(tmp_path):
    from retrain.data import tick_generator
    from retrain.errors import ConfigError
    from retrain.ingest import landing
    from retrain.ingest import ticks as ingest_ticks
    from retrain.workloads import adhoc

    for seed, day in enumerate(TICK_DAYS):
        folder = tmp_path / f"date={day}"
        folder.mkdir()
        (folder / "ticks.csv").write_bytes(tick_generator.to_csv_bytes(tick_generator.generate_ticks(date.fromisoformat(day),
                                                                                   ticks_per_day=12_000, seed=seed)))
        landing.land("ticks", str(folder))
        ingest_ticks.ingest_partition(day, f"adhoc-test-{day}")

    run = _trigger({
        "kind": "timeseries", "partition": TICK_DAYS[1], "overrides": {"window_partitions": 2}})
    assert str(run.state) == "success"
    extra = _ti(run, "log_candidate").xcom_pull(task_ids="log_candidate")
    assert extra["data"]["partitions"] == TICK_DAYS[:2] and extra["data"]["window_end"] == TICK_DAYS[1]
    tags = _client().get_run(extra["run_id"]).data.tags
    assert tags["data.partitions"] == ",".join(TICK_DAYS[:2]) and tags["retrain.trigger"] == "adhoc"

    with pytest.raises(ConfigError, match="publish = true is not possible for ticks"):
        adhoc.plan({"kind": "timeseries", "publish": True})
