"""The real embedded stack's processes and secrets: a killed component's children never outlive it, and the
admin password stays in its 0600 file (issue #12, items 8 and 10).

The fault is real: the scheduler's session leader is SIGKILLed, and its LocalExecutor workers, re-parented to
init, keep running until `retrain up` (restarting the scheduler) or `retrain down` stops them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrain.stack import alive, processes, session_members

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def _kill_leader_keeping_its_workers(home: Path) -> tuple[int, list[int]]:
    """SIGKILL the scheduler's session leader only; returns (its session id, the workers it leaves behind)."""
    sid = int((home / "run" / "scheduler.pid").read_text())
    _wait(lambda: [p for p in session_members(sid) if p != sid], 60, "the scheduler's LocalExecutor workers")
    os.kill(sid, signal.SIGKILL)
    _wait(lambda: not alive(sid), 30, f"scheduler {sid} to die")
    time.sleep(2.0)  # children that notice their parent's death have exited by now; the workers have not
    orphans = session_members(sid)
    assert orphans, "nothing outlived the scheduler: the fault is not real"
    return sid, orphans


def _logs(home: Path) -> list[Path]:
    return [p for p in [*(home / "logs").rglob("*"), *(home / "airflow" / "logs").rglob("*")] if p.is_file()]


def test_a_killed_scheduler_leaves_no_process_and_the_password_stays_private(tmp_path, fault_report):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "RETRAIN_"))}
    env |= {"RETRAIN_HOME": str(home), "RETRAIN_AIRFLOW_PORT": str(_free_port()),
            "RETRAIN_MLFLOW_PORT": str(_free_port())}
    retrain = [sys.executable, "-m", "retrain"]
    sessions: set[int] = set()
    password = None
    try:
        started = subprocess.run(retrain + ["up"], env=env, capture_output=True, text=True, timeout=300)
        assert started.returncode == 0, started.stdout + started.stderr
        sessions |= {int(p.read_text()) for p in (home / "run").glob("*.pid")}

        # secrets: private folders, a 0600 password file that `up` names, and no password in any output or log
        password_file = home / "airflow" / "simple_auth_manager_passwords.json.generated"
        password = json.loads(password_file.read_text())["admin"]
        assert (_mode(home), _mode(home / "airflow")) == (0o700, 0o700)
        assert (_mode(password_file), _mode(home / "run" / "jwt_secret")) == (0o600, 0o600)
        assert str(password_file) in started.stdout
        assert password not in started.stdout + started.stderr

        # orphans: kill the scheduler's leader; `up` restarts it and stops what its old session left
        old_sid, orphans = _kill_leader_keeping_its_workers(home)
        restarted = subprocess.run(retrain + ["up"], env=env, capture_output=True, text=True, timeout=300)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert "scheduler: stopped" in restarted.stdout and "left from its previous run" in restarted.stdout
        assert session_members(old_sid) == [], "up left the killed scheduler's workers running"
        assert not any(alive(pid) for pid in orphans)
        sessions |= {int(p.read_text()) for p in (home / "run").glob("*.pid")}

        # and `down` stops the workers of a scheduler whose leader is dead too
        _kill_leader_keeping_its_workers(home)
    finally:
        stopped = subprocess.run(retrain + ["down"], env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "scheduler" in stopped.stdout
    left = {sid: session_members(sid) for sid in sessions if session_members(sid)}
    fault_report(scenario="scheduler leader SIGKILLed twice, then `retrain up` and `retrain down`",
                 fault="SIGKILL, LocalExecutor workers orphaned", snapshots="-", trained_or_superseded="-",
                 files_lost="-", double_champions="-", lost_champion_events="-", worst_lag_s="-",
                 processes_left=sum(len(m) for m in left.values()) + len(processes(str(home))))
    assert left == {}, f"processes of the stack's sessions still running: {left}"
    assert [proc.cmdline() for proc in processes(str(home))] == []
    assert password
    leaked = [str(p) for p in _logs(home) if password.encode() in p.read_bytes()]
    assert leaked == [], f"the admin password is in {leaked}"
