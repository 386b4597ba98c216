"""`retrain land|ingest|gate|train|promote` for every dataset, without a scheduler, on small generated data.

Each command runs the same library steps as the DAGs (the catalog's ingest step, the workload registry's
steps, the promotion step); errors are one line with exit 2 (usage), 3 (data refused) or 1 (infrastructure).
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest

from retrain import cli, config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(tmp_path, monkeypatch, edit_config):
    """An empty RETRAIN_HOME, a SQLite MLflow store, and a copy of configs/ whose CNNs train one epoch."""
    for key, value in {"RETRAIN_HOME": str(tmp_path / "home"),
                       "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RETRAIN_DATA_ROOT", raising=False)

    def one_epoch(raw):
        for block in raw["datasets"].values():
            block["loop"] |= {"epochs": 1, "batch_size": 64}

    edit_config("image_dl_training", one_epoch)  # and forgets whatever was read before
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``retrain ARGV`` in this process: (exit code, stdout, stderr); the environment it sets is put back."""
    saved = dict(os.environ)
    try:
        code = cli.main(list(argv))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out = capsys.readouterr()
    return code, out.out, out.err


def _land_and_ingest(capsys, dataset: str, sources: list[Path]) -> list[dict]:
    for source in sources:
        code, _, err = run(capsys, "land", dataset, str(source))
        assert code == 0, err
    code, out, err = run(capsys, "ingest", dataset)
    assert code == 0, err
    decoder, found, text = json.JSONDecoder(), [], out.strip()
    while text:  # one JSON object per ingested arrival
        obj, end = decoder.raw_decode(text)
        found.append(obj)
        text = text[end:].strip()
    assert [f["status"] for f in found] == ["ingested"] * len(sources)
    return [f["event"] for f in found]


def _gate_and_train(capsys, dataset: str, key: str, model: str) -> dict:
    code, out, err = run(capsys, "gate", dataset, key)
    assert code == 0, err
    assert json.loads(out)["verdict"] == "passed"
    code, out, err = run(capsys, "train", dataset, key)
    assert code == 0, err
    extra = json.loads(out)
    assert extra["model"] == model and extra["dataset"] == dataset
    return extra


def _power_sources(world: Path) -> list[Path]:
    from retrain.data.power import generate_power

    source = world / "power.txt"
    source.write_bytes(generate_power(40 * 1440, seed=7))
    return [source]


def test_household_power_ingest_gate_train_and_promote(world, capsys):
    event, = _land_and_ingest(capsys, "household_power", _power_sources(world))
    extra = _gate_and_train(capsys, "household_power", event["version"], "household_power_lgbm")
    assert extra["data"]["version"] == event["version"] and extra["primary_metric"] == "test_rmse"
    assert extra["metrics"]["test_rmse"] < extra["metrics"]["baseline_seasonal_naive_rmse"]

    code, out, err = run(capsys, "promote", "household_power_lgbm", extra["run_id"])
    assert code == 0, err
    decision = json.loads(out)
    assert decision["candidate_run_id"] == extra["run_id"]
    assert decision["outcome"] == "first_model", decision  # 40 days: far better than the seasonal naive
    code, out, err = run(capsys, "promote", "household_power_lgbm")  # the newest candidate: judged already
    assert code == 0, err
    assert json.loads(out)["outcome"] == decision["outcome"]


def test_mnist_ingest_gate_train(world, capsys):
    from retrain import samples

    drop = samples.mnist(str(world / "mnist-drop"), n_train=400, n_test=200, seed=3)
    event, = _land_and_ingest(capsys, "mnist", [Path(drop)])
    extra = _gate_and_train(capsys, "mnist", event["version"], "mnist_cnn")
    assert extra["primary_metric"] == "test_accuracy" and 0.0 <= extra["metrics"]["test_accuracy"] <= 1.0

    code, out, err = run(capsys, "promote", "mnist_cnn")  # the newest candidate, against the majority class
    assert code == 0, err
    decision = json.loads(out)
    assert decision["candidate_run_id"] == extra["run_id"] and decision["outcome"] == "first_model", decision
    assert "significantly beats the naive baseline" in decision["reasons"][0], decision
    assert "n=200)" in decision["reasons"][0], decision


def test_cifar10_ingest_gate_train(world, capsys):
    from retrain import samples

    drop = samples.cifar10(str(world / "cifar-drop"), n_per_batch=300, n_batches=1, n_test=120, seed=3)
    event, = _land_and_ingest(capsys, "cifar10", [Path(drop)])
    extra = _gate_and_train(capsys, "cifar10", event["version"], "cifar10_cnn")
    assert extra["metrics"]["test_examples"] == 120


def test_ticks_ingest_gate_train_a_window_named_by_its_last_partition(world, capsys):
    from retrain import samples

    folders = samples.ticks(str(world / "ticks"), start=date(2026, 3, 2), days=3, ticks_per_day=40_000, seed=5)
    events = _land_and_ingest(capsys, "ticks", [Path(f) for f in folders])
    assert [e["partition"] for e in events] == ["2026-03-02", "2026-03-03", "2026-03-04"]
    extra = _gate_and_train(capsys, "ticks", "2026-03-04", "ticks_direction_lgbm")
    assert extra["data"]["partitions"] == ["2026-03-02", "2026-03-03", "2026-03-04"]
    assert extra["data"]["window_end"] == "2026-03-04"

    code, out, err = run(capsys, "promote", "ticks_direction_lgbm", extra["run_id"])
    assert code == 0, err
    decision = json.loads(out)  # judged against the majority class on the window's test day, paired
    assert decision["outcome"] == "first_model" and "beats the naive baseline" in decision["reasons"][0], decision
    assert f"n={int(extra['metrics']['test_examples'])})" in decision["reasons"][0], (decision, extra["metrics"])

    code, _, err = run(capsys, "train", "ticks", "2026-03-03")  # a window needs 3 partitions up to its end
    assert code == 2
    assert err.count("\n") == 1 and "window_partitions = 3 needs that many committed partitions" in err


def test_refused_data_is_one_line_with_exit_3_and_the_quality_reports_path(world, capsys):
    from retrain import samples

    drop = Path(samples.mnist(str(world / "small-drop"), n_train=60, n_test=20, seed=3))  # suite: >= 100 images
    event, = _land_and_ingest(capsys, "mnist", [drop])
    code, out, err = run(capsys, "gate", "mnist", event["version"])
    assert code == 3 and out == ""
    assert err.startswith(f"retrain gate: data refused: mnist snapshot {event['version']} failed")
    assert err.count("\n") == 1 and "Traceback" not in err
    report = err.rsplit("report: ", 1)[1].strip()
    assert Path(report, "quality_report.md").exists() or Path(report).exists()


def test_usage_errors_exit_2_in_one_line(world, capsys):
    code, _, err = run(capsys, "gate", "household_power", "nope")
    assert code == 2 and "household_power: no committed snapshot with version 'nope'" in err
    code, _, err = run(capsys, "promote", "mnist_cnn")
    assert code == 2 and err.strip().splitlines()[-1] == (
        "retrain promote: mnist_cnn: no finished candidate run to judge (rule: a candidate is an MLflow run of its "
        "training workload)")
    code, _, err = run(capsys, "promote", "mnist_cnn", "0" * 32)
    assert code == 2 and err.startswith("retrain promote: candidate event names MLflow run")
    assert "which does not exist" in err and err.count("\n") == 1


def test_an_image_train_split_smaller_than_training_needs_fails_the_gate_naming_the_minimum(world, capsys):
    """One batch of the loop's batch_size must remain once the validation share is set aside: 64 / 0.9 -> 71."""
    from retrain import samples
    from retrain.workloads import images

    assert images.min_train_images(images.dataset_config("mnist")) == 71
    drop = Path(samples.mnist(str(world / "short-drop"), n_train=70, n_test=60, seed=3))
    event, = _land_and_ingest(capsys, "mnist", [drop])
    code, out, err = run(capsys, "gate", "mnist", event["version"])
    assert code == 3 and out == "" and err.count("\n") == 1, err
    assert ("split_size on train: the train split must hold at least 71 images (one batch of 64, loop.batch_size, "
            "after the validation share 0.1) (observed: 70 images)") in err, err


def test_a_tick_window_too_thin_to_train_fails_the_gate_naming_the_minimum(world, capsys, edit_config):
    """Days that pass the suite (every symbol >= 1000 ticks) but whose training days hold fewer bars than the
    config's min_train_examples fail at the gate, not in prepare."""
    from retrain import samples

    edit_config("time_series_training", lambda raw: raw["datasets"]["ticks"].update(min_train_examples=5000))
    folders = samples.ticks(str(world / "thin"), start=date(2026, 3, 2), days=3, ticks_per_day=8_000, seed=5)
    _land_and_ingest(capsys, "ticks", [Path(f) for f in folders])
    code, out, err = run(capsys, "gate", "ticks", "2026-03-04")
    assert code == 3 and out == "" and err.count("\n") == 1, err
    assert "walk_forward_split on bar_start: at least 5000 training bars (min_train_examples)" in err, err
    assert "in the 2 training days ['2026-03-02', '2026-03-03'] of a window of 3 partitions" in err, err


def test_the_readme_states_each_datasets_minimum_as_the_configs_derive_it():
    from retrain.workloads import images

    readme = (REPO / "README.md").read_text()
    power = config.dataset_settings("tabular_ml_training", "household_power")
    ticks = config.dataset_settings("time_series_training", "ticks")
    assert f"| `household_power` | {power.min_history_days:g} days of readings" in readme
    for dataset in ("mnist", "cifar10"):
        minimum = images.min_train_images(images.dataset_config(dataset))
        assert f"| `{dataset}` | {minimum} images in the train split" in readme, dataset
    assert (f"| `ticks` | `window_partitions` {ticks.window_partitions} committed partitions up to the window's end, "
            f"whose {ticks.window_partitions - 1} training days hold {ticks.min_train_examples} training bars") in readme
