"""The named locks around every alias move, in both profiles: a real second process holds the lock, a waiter
times out, and a SIGKILL of the holder frees it (the kernel drops the flock; PostgreSQL drops the advisory
lock with the connection)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from retrain import locks

HOLD = """
import sys, time
from retrain import locks
with locks.named_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""
@pytest.fixture(params=["embedded", "celery"])
def profile(request, retrain_home, monkeypatch):
    if request.param == "celery":
        monkeypatch.setenv("RETRAIN_PROFILE", "celery")
        monkeypatch.setenv("RETRAIN_DATABASE_URL", request.getfixturevalue("postgres_url"))
    else:
        monkeypatch.delenv("RETRAIN_PROFILE", raising=False)
    return request.param


def _holder(name: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, name], stdout=subprocess.PIPE, text=True,
                               env=dict(os.environ), start_new_session=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_lock_held_by_another_process_is_waited_for_then_freed_by_its_death(profile):
    name = f"registry.test-{profile}-{os.getpid()}"
    holder = _holder(name)
    try:
        started = time.monotonic()
        with pytest.raises(locks.LockTimeout, match=name):
            with locks.named_lock(name, timeout=1.0):
                pass
        assert time.monotonic() - started >= 1.0
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # the holder dies without releasing anything
        holder.wait()
    with locks.named_lock(name, timeout=10.0):  # the kernel / PostgreSQL released it
        pass


def test_two_threads_never_hold_one_lock_together(profile):
    name = f"registry.threads-{profile}-{os.getpid()}"
    inside, overlaps = [], []

    def work():
        for _ in range(5):
            with locks.named_lock(name, timeout=30):
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(1)
                time.sleep(0.01)
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps


def test_the_holding_thread_may_take_the_lock_again(profile):
    name = f"registry.reentrant-{profile}-{os.getpid()}"
    with locks.named_lock(name, timeout=1):
        with locks.named_lock(name, timeout=1):
            pass
    with locks.named_lock(name, timeout=1):  # released once the outer block ends
        pass


def test_advisory_keys_are_stable_across_processes():
    key = locks.advisory_key("registry.household_power_lgbm")
    out = subprocess.run([sys.executable, "-c", "from retrain import locks; "
                          "print(locks.advisory_key('registry.household_power_lgbm'))"],
                         capture_output=True, text=True, env=dict(os.environ) | {"PYTHONHASHSEED": "7"})
    assert int(out.stdout) == key and -(2 ** 63) <= key < 2 ** 63
