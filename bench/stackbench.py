"""What the real-stack benchmarks share: a stack in a temporary RETRAIN_HOME on free ports, and its RSS.

Not a benchmark itself (no ``bench_`` prefix); imported by the benchmarks that start a stack.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

RETRAIN = [sys.executable, "-m", "retrain"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stack_env(prefix: str) -> dict[str, str]:
    """A clean environment for a new stack: temporary home, free ports, nothing inherited from another one."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "RETRAIN_"))}
    return env | {"RETRAIN_HOME": str(home), "RETRAIN_AIRFLOW_PORT": str(free_port()),
                  "RETRAIN_MLFLOW_PORT": str(free_port())}


@contextlib.contextmanager
def running_stack(prefix: str) -> Iterator[dict[str, str]]:
    """``retrain up`` in a new home; this process's environment points at it; ``retrain down`` at the end."""
    env = stack_env(prefix)
    os.environ.update(env)
    subprocess.run(RETRAIN + ["up"], env=env, check=True, capture_output=True, timeout=300)
    try:
        from retrain import environment

        environment.apply(override=True)
        yield env
    finally:
        subprocess.run(RETRAIN + ["down"], env=env, capture_output=True, timeout=120)


def stack_rss(home: str, exclude: frozenset[int] = frozenset()) -> int:
    """Bytes resident in every process of the stack in ``home`` (``retrain.stack.processes``), but this one and
    ``exclude`` (clients such as ``retrain demo`` itself)."""
    import psutil

    from retrain.stack import processes

    total = 0
    for proc in processes(home):
        if proc.pid != os.getpid() and proc.pid not in exclude:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
    return total


class RssSampler:
    """Samples :func:`stack_rss` every ``interval`` seconds in a thread; keeps every sample with its time."""

    def __init__(self, home: str, interval: float = 1.0, exclude: frozenset[int] = frozenset()):
        self.home, self.interval, self.exclude = home, interval, exclude
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), stack_rss(self.home, self.exclude)))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, since: float = 0.0) -> int:
        return max((rss for t, rss in self.samples if t >= since), default=0)


def timestamp(value: str) -> float:
    """Seconds since the epoch of an ISO timestamp as the Airflow REST API writes it."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def wait_for(what: str, probe: Callable[[], object], timeout: float = 300.0, interval: float = 0.25):
    """``probe()``'s first truthy answer, polled every ``interval`` seconds; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(interval)
    raise TimeoutError(f"{what} not seen after {timeout:.0f}s")


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def print_spans(title: str, spans: dict[str, list[float]]) -> None:
    """One line per span: median, 90th percentile and max seconds, under a title naming the machine's load."""
    import statistics

    print(f"\n{title} (python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f})")
    for name, values in spans.items():
        print(f"  {name:<40} median {statistics.median(values):6.2f} s   p90 {percentile(values, 0.9):6.2f} s   "
              f"max {max(values):6.2f} s")
