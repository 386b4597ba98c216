"""Landing names are plain names: anything else is refused in one line and the landing zone does not change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrain.cli import main
from retrain.errors import LandingPathError
from retrain.ingest import landing

DATASET = "household_power"
REFUSED = {
    "../x.txt": "a path",
    "/etc/x": "a path",
    "sub/x.txt": "a path",
    "a\\b.txt": "a path",
    ".": "names a folder",
    "..": "names a folder",
    ".hidden.txt": "a hidden name",
    "": "an empty name",
    "a\nb.txt": "control characters",
    "bell\x07.txt": "control characters",
    "x" * 256: "256 bytes long",
}


def _tree(home: Path) -> list[str]:
    """Every path under RETRAIN_HOME, hidden temp files included."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*"))


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "power.txt"
    path.write_bytes(b"Date;Time\n")
    return path


@pytest.mark.parametrize("name", REFUSED, ids=[repr(n)[:20] for n in REFUSED])
def test_land_refuses_a_name_that_is_not_plain_and_changes_nothing(retrain_home, source, name):
    before = _tree(retrain_home)
    with pytest.raises(LandingPathError) as refused:
        landing.land(DATASET, str(source), name=name)
    message = str(refused.value)
    assert repr(name) in message and "rule: a plain file name" in message and REFUSED[name] in message
    assert "\n" not in message
    assert _tree(retrain_home) == before


@pytest.mark.parametrize("name", REFUSED, ids=[repr(n)[:20] for n in REFUSED])
def test_cli_refuses_in_one_line_with_exit_2(retrain_home, source, name, capsys):
    before = _tree(retrain_home)
    assert main(["land", DATASET, str(source), "--name", name]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.count("\n") == 1 and out.err.startswith("retrain land: landing name ")
    assert REFUSED[name] in out.err
    assert _tree(retrain_home) == before


def test_the_default_name_from_the_source_is_checked_too(retrain_home, tmp_path, capsys):
    hidden = tmp_path / ".upload.txt"
    hidden.write_bytes(b"x")
    before = _tree(retrain_home)
    assert main(["land", DATASET, str(hidden)]) == 2
    err = capsys.readouterr().err
    assert "'.upload.txt'" in err and "a hidden name" in err and "pass --name NAME" in err
    assert _tree(retrain_home) == before
    assert main(["land", DATASET, str(hidden), "--name", "upload.txt"]) == 0
    assert landing.pending(DATASET) == ["upload.txt"]
    landed = retrain_home / "data" / "landing" / DATASET
    assert sorted(p.name for p in landed.iterdir()) == ["upload.txt"]  # no temp file beside it


def test_a_missing_source_is_one_line(retrain_home, tmp_path, capsys):
    before = _tree(retrain_home)
    assert main(["land", DATASET, str(tmp_path / "nope.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.txt does not exist" in err
    assert _tree(retrain_home) == before


def test_a_plain_name_lands(retrain_home, source):
    location = landing.land(DATASET, str(source), name="power..2026 (1).txt")
    assert Path(location).read_bytes() == source.read_bytes()
    assert landing.pending(DATASET) == ["power..2026 (1).txt"]


def test_the_command_prints_no_traceback(tmp_path, source):
    """The real process: `retrain land ... --name ../x.txt` exits 2 with one line on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIN_", "AIRFLOW", "MLFLOW"))}
    home = tmp_path / "home"
    out = subprocess.run([sys.executable, "-m", "retrain", "land", DATASET, str(source), "--name", "../x.txt"],
                         env=env | {"RETRAIN_HOME": str(home)}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1
    assert "'../x.txt'" in out.stderr
    assert not (home / "data" / "landing").exists() or not list((home / "data" / "landing").rglob("*"))
