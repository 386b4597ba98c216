"""The `retrain` command line: help on every command, and settings errors as one clear line, not a traceback."""

from __future__ import annotations

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
