"""Proof that a new model is one catalog entry plus its module: a fifth model (tests/lib/toy_regression_workload.py),
registered for this test only, goes through land, ingest, gate, train and promotion with the platform's own
commands and steps, and no other module is edited."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

import toy_regression_workload as toy
from retrain import assets, catalog, cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fifth_model(tmp_path, monkeypatch, config_dir, edit_config):
    """The toy model's catalog entries, its config, quality suite and promotion policy (copies of configs/ and
    expectations/ with its files added), an empty RETRAIN_HOME and a SQLite MLflow store."""
    for entry in toy.ENTRIES:
        table = {catalog.WorkloadEntry: catalog.WORKLOADS, catalog.DatasetEntry: catalog.DATASETS,
                 catalog.ModelEntry: catalog.MODELS}[type(entry)]
        monkeypatch.setitem(table, entry.name, entry)
    suites = tmp_path / "expectations"
    shutil.copytree(REPO / "expectations", suites)
    (config_dir / f"{toy.WORKLOAD}.yaml").write_text(yaml.safe_dump(toy.CONFIG))
    (suites / f"{toy.DATASET}.json").write_text(json.dumps(toy.SUITE))
    for key, value in {"RETRAIN_HOME": str(tmp_path / "home"), "RETRAIN_EXPECTATIONS": str(suites),
                       "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RETRAIN_DATA_ROOT", raising=False)
    edit_config("promotion", lambda raw: raw["models"].update({toy.MODEL: toy.POLICY}))
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, dict | None, str]:
    saved = dict(os.environ)
    try:
        code = cli.main(list(argv))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip().startswith("{") else None), out.err


def test_a_fifth_model_is_one_catalog_entry_plus_its_module(fifth_model, capsys):
    from retrain import registry, workloads

    # the platform derives the new model's names and workload from the catalog alone
    assert assets.MODELS[toy.MODEL] == toy.DATASET
    assert assets.CANDIDATE_ASSETS[toy.MODEL].name == f"{toy.MODEL}.candidate"
    assert workloads.for_dataset(toy.DATASET) is toy

    source = fifth_model / "readings.csv"
    source.write_bytes(toy.generate(800, seed=4))
    code, _, err = run(capsys, "land", toy.DATASET, str(source))
    assert code == 0, err
    code, ingested, err = run(capsys, "ingest", toy.DATASET)
    assert code == 0, err
    event = ingested["event"]
    assert ingested["status"] == "ingested" and event["rows"] == 800 and event["dataset"] == toy.DATASET

    code, verdict, err = run(capsys, "gate", toy.DATASET, event["version"])
    assert code == 0 and verdict["verdict"] == "passed", err

    code, candidate, err = run(capsys, "train", toy.DATASET, event["version"])
    assert code == 0, err
    assert candidate["model"] == toy.MODEL and candidate["primary_metric"] == "test_rmse"
    assert candidate["metrics"]["test_rmse"] < 0.6 * candidate["metrics"]["baseline_mean_rmse"]

    code, decision, err = run(capsys, "promote", toy.MODEL, candidate["run_id"])
    assert code == 0, err
    assert decision["outcome"] == "first_model" or decision["outcome"] == "promoted", decision
    assert decision["champion_model_uri"] == f"models:/{toy.MODEL}/{decision['version']}"
    assert registry.alias_version(toy.MODEL, registry.CHAMPION).version == decision["version"]


def test_bad_readings_of_the_fifth_model_are_refused_by_its_own_suite(fifth_model, capsys):
    source = fifth_model / "few.csv"
    source.write_bytes(toy.generate(50, seed=4))  # its suite asks for at least 200 readings
    assert run(capsys, "land", toy.DATASET, str(source))[0] == 0
    code, _, err = run(capsys, "ingest", toy.DATASET)
    assert code == 0, err
    code, _, err = run(capsys, "train", toy.DATASET)
    assert code == 3 and err.startswith(f"retrain train: data refused: {toy.DATASET} snapshot")
    assert "at least 200 readings" in err or "row_count" in err
    assert err.count("\n") == 1 and "Traceback" not in err
