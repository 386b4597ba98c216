"""Every DAG file imports cleanly, cheaply, and carries what operators rely on."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from retrain.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").rglob("*.py"))
HEAVY = ["torch", "torchvision", "lightgbm", "mlflow", "great_expectations", "pandas", "sklearn"]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_every_dag_file_imports(dagbag):
    assert DAG_FILES, "no DAG files found"
    assert dagbag.import_errors == {}
    assert {Path(d.fileloc).name for d in dagbag.dags.values()} == {f.name for f in DAG_FILES}


DAG_IDS = ["ingest_power", "ingest_mnist", "ingest_cifar10", "ingest_ticks", "route_arrivals", "tabular_ml_training",
           "image_dl_training", "time_series_training", "promote_models", "promote_partitioned_models",
           "adhoc_training", "reconcile_freshness"]


def test_expected_dags_exist(dagbag):
    assert sorted(dagbag.dag_ids) == sorted(DAG_IDS)


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_dag_has_owner_retries_tags_and_docs(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.doc_md and len(dag.doc_md.strip()) > 80
    assert "retrain" in dag.tags
    for task in dag.tasks:
        assert task.owner not in ("", "airflow"), task.task_id
        assert task.retries >= 1, task.task_id
        assert task.execution_timeout is not None, task.task_id
        assert task.on_failure_callback, task.task_id


def test_no_task_splits_its_result_into_one_xcom_per_key(dagbag):
    """A task that returns a dict pushes it as one XCom: nothing downstream reads single keys, and
    ``multiple_outputs`` inferred from ``-> dict`` would store every key a second time (ruff AIR202)."""
    split = sorted(f"{dag.dag_id}.{task.task_id}" for dag in dagbag.dags.values() for task in dag.tasks
                   if getattr(task, "multiple_outputs", False))
    assert split == []


def test_training_is_scheduled_on_its_asset_and_emits_the_candidate(dagbag):
    dag = dagbag.dags["tabular_ml_training"]
    condition = dag.timetable.asset_condition
    assert (condition.name, condition.uri) == ("household_power", f"file://{get_settings().curated('household_power')}")
    outlets = [o.name for t in dag.tasks for o in t.outlets]
    assert outlets == ["household_power_lgbm.candidate"]
    assert dag.get_task("train").pool == "cpu"


def test_adhoc_training_is_manual_only_and_trains_on_the_chosen_resources(dagbag):
    dag = dagbag.dags["adhoc_training"]
    assert type(dag.timetable).__name__ == "NullTimetable" and not dag.timetable.can_be_scheduled
    assert dag.params["kind"] == "tabular" and dag.params["publish"] is False
    pools = {t.task_id: (t.pool, t.queue) for t in dag.tasks if t.task_id.endswith((".train", ".evaluate"))}
    assert pools == {"on_cpu.train": ("cpu", "default"), "on_cpu.evaluate": ("cpu", "default"),
                     "on_gpu.train": ("gpu", "gpu"), "on_gpu.evaluate": ("gpu", "gpu")}


def test_image_tasks_that_need_torch_go_to_the_gpu_queue(dagbag):
    """A CPU worker carries no torch (the `tabular` dependency set): training, evaluation and logging the
    PyTorch model run where the `dl` set is installed."""
    dag = dagbag.dags["image_dl_training"]
    queues = {t.task_id: (t.queue, t.pool) for t in dag.tasks}
    assert queues["pipeline.train"] == ("gpu", "gpu") and queues["pipeline.evaluate"] == ("gpu", "gpu")
    assert queues["pipeline.log_candidate"][0] == "gpu"
    assert queues["pipeline.quality_gate"][0] == "default"

    promote = {t.task_id: (t.queue, t.pool) for t in dagbag.dags["promote_models"].tasks}
    assert promote["judge_image"] == ("gpu", "default_pool")  # scoring a CNN loads torch, but takes no GPU slot
    assert promote["judge"][0] == "default"


def test_image_candidates_are_judged_apart_from_the_others():
    from retrain.airflow import queues

    events = [{"model": "household_power_lgbm", "run_id": "1"}, {"model": "cifar10_cnn", "run_id": "2"},
              {"model": "mnist_cnn", "run_id": "3"}, {"model": "ticks_direction_lgbm", "run_id": "4"}]
    split = queues.by_judge_queue(events)
    assert [e["run_id"] for e in split["default"]] == ["1", "4"]
    assert [e["run_id"] for e in split["gpu"]] == ["2", "3"]


def test_ingest_emits_the_data_asset(dagbag):
    dag = dagbag.dags["ingest_power"]
    assert [o.name for t in dag.tasks for o in t.outlets] == ["household_power"]
    assert dag.max_active_runs == 1


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_parsing_loads_no_heavy_module(dag_file):
    """Parsing runs at every scheduler loop: torch or pandas at the top of a DAG file costs seconds each time."""
    code = (
        "import runpy, sys, json\n"
        f"runpy.run_path({str(dag_file)!r})\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_use_the_asset_catalog(dag_file):
    """Asset URIs come from retrain.assets, never literals in DAG files."""
    text = dag_file.read_text()
    assert "://" not in text
    assert "Asset(" not in text


@pytest.mark.parametrize("param, good, bad", [
    ("epochs", 200, 201), ("batch_size", 4096, 0), ("lr", 1.0, 0.0), ("device", "cuda:1", "gpu"),
])
def test_image_dag_params_accept_exactly_what_the_loop_config_accepts(dagbag, param, good, bad):
    """A manual run's override is refused by the trigger form exactly when LoopConfig would refuse it later."""
    from pydantic import ValidationError

    from retrain.config import LoopConfig

    params = copy.deepcopy(dagbag.dags["image_dl_training"].params)  # the module's DagBag stays as parsed
    params[param] = good  # ParamsDict validates on assignment
    LoopConfig(**{param: good})
    with pytest.raises(ValueError):
        params[param] = bad
    with pytest.raises(ValidationError):
        LoopConfig(**{param: bad})
