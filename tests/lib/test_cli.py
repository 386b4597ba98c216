"""The `retrain` command line: help on every command, and settings errors as one clear line, not a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from retrain.cli import build_parser


def _commands() -> list[list[str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = []
    for name, command in sub.choices.items():
        commands.append([name])
        for action in command._actions:
            if getattr(action, "choices", None) and action.dest == "kind":
                commands += [[name, kind] for kind in action.choices]
    return commands


@pytest.mark.parametrize("argv", _commands(), ids=" ".join)
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*argv, "--help"])
    assert exit_.value.code == 0
    assert "usage: retrain" in capsys.readouterr().out


@pytest.mark.parametrize("env, message", [
    ({"RETRAIN_PROFILE": "kubernetes"}, "RETRAIN_PROFILE must be one of ['embedded', 'celery'] (observed 'kubernetes')"),
    ({"RETRAIN_PROFILE": "celery"}, "RETRAIN_PROFILE=celery needs RETRAIN_DATABASE_URL"),
])
def test_a_bad_profile_is_one_line_naming_the_setting(env, message):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIN_PROFILE", "RETRAIN_DATABASE", "RETRAIN_BROKER"))}
    out = subprocess.run([sys.executable, "-m", "retrain", "status"], env=clean | env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


def test_up_refuses_an_unknown_component_before_starting_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIN_", "AIRFLOW", "MLFLOW"))}
    out = subprocess.run([sys.executable, "-m", "retrain", "up", "scheduler", "schedular"],
                         env=env | {"RETRAIN_HOME": str(tmp_path)}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "retrain up: unknown stack component(s) ['schedular']" in out.stderr and "'scheduler'" in out.stderr
    assert "Traceback" not in out.stderr
    assert not list(tmp_path.rglob("*.pid"))


def _retrain(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "retrain", *argv], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    """The CLI's environment: its own RETRAIN_HOME and a SQLite MLflow store there."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIN_", "AIRFLOW", "MLFLOW"))}
    return keep | {"RETRAIN_HOME": str(tmp_path / "home"),
                   "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}


def test_data_too_short_to_train_on_is_refused_with_exit_3_and_the_minimum_not_a_traceback(tmp_path, cli_env):
    from retrain.data.power import generate_power

    source = tmp_path / "power.txt"
    source.write_bytes(generate_power(3 * 1440, seed=5))
    assert _retrain("land", "household_power", str(source), env=cli_env).returncode == 0
    ingested = _retrain("ingest", "household_power", env=cli_env)
    assert ingested.returncode == 0, ingested.stderr
    version = json.loads(ingested.stdout)["event"]["version"]
    for step in ("gate", "train"):
        out = _retrain(step, "household_power", version, env=cli_env)
        assert out.returncode == 3, out.stderr
        assert f"retrain {step}: data refused: household_power snapshot {version} failed" in out.stderr
        assert "at least 38 days" in out.stderr and "Traceback" not in out.stderr


def test_history_of_a_model_with_no_version_says_so(cli_env):
    out = _retrain("history", "mnist_cnn", env=cli_env)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == ("mnist_cnn has no registered version yet: nothing has been "
                                                   "promoted, so there is no history")
    assert "Traceback" not in out.stderr


def test_an_unreachable_tracking_server_is_one_line_with_exit_1(cli_env):
    env = cli_env | {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    out = _retrain("history", "mnist_cnn", env=env)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("retrain history: a service is unreachable or failed (")
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
