"""Named mutual-exclusion locks that hold across processes and hosts: the critical sections of the chain.

Every move of one model's aliases (promotion, approval, rollback, repair) happens inside
``named_lock("registry.<model>")``, so a move re-reads the champion with no other move in between.

Where the lock lives follows the profile, so it holds wherever the tasks run:

* **embedded** (LocalExecutor, one host): an exclusive ``flock`` on ``$RETRAIN_HOME/locks/<name>.lock``. The
  kernel drops it when the holding process dies, however it dies, so a killed task never leaves it held.
* **celery** (workers on several hosts, PostgreSQL metadata): a session-level advisory lock
  (``pg_advisory_lock``) in the Airflow metadata database, keyed by a hash of the name. PostgreSQL drops it when
  the holder's connection ends, so a killed worker never leaves it held either.

Waiting is bounded: past ``timeout`` a :class:`LockTimeout` is raised, an infrastructure error that Airflow
retries with backoff.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator

from retrain.errors import RetrainError

log = logging.getLogger(__name__)
_POLL_S = 0.05
_held = threading.local()  # names this thread holds


class LockTimeout(RetrainError):
    """A lock was not acquired in time (another holder is slow or stuck): retried, never a data error."""


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` (the same on every host and Python version)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def named_lock(name: str, *, timeout: float = 300.0) -> Iterator[None]:
    """Hold the lock ``name`` for the duration of the block (see the module docstring for where it lives)."""
    from retrain import environment

    held = _held.__dict__.setdefault("names", set())
    if name in held:  # re-entered by the thread that holds it
        yield
        return
    started = time.monotonic()
    if environment.is_scale_out():
        context = _advisory_lock(name, timeout)
    else:
        context = _file_lock(name, timeout)
    with context:
        waited = time.monotonic() - started
        if waited > 1:
            log.info("lock %s acquired after %.1fs", name, waited)
        held.add(name)
        try:
            yield
        finally:
            held.discard(name)


@contextlib.contextmanager
def _file_lock(name: str, timeout: float) -> Iterator[None]:
    import fcntl

    from retrain.settings import get_settings

    folder = get_settings().home / "locks"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{_safe(name)}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise LockTimeout(f"lock {name!r} ({path}) still held by another process after {timeout:.0f}s") from None
                time.sleep(_POLL_S)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a person looking at a stuck lock
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _advisory_lock(name: str, timeout: float) -> Iterator[None]:
    import sqlalchemy as sa

    from retrain import environment

    url = environment.sqlalchemy_url(os.environ.get("RETRAIN_DATABASE_URL", ""))
    key = advisory_key(name)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            deadline = time.monotonic() + timeout
            while not connection.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                connection.rollback()
                if time.monotonic() > deadline:
                    raise LockTimeout(f"advisory lock {name!r} (key {key}) still held after {timeout:.0f}s")
                time.sleep(_POLL_S * 4)
            connection.commit()  # session-level lock: it outlives the transaction, not the connection
            try:
                yield
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                connection.commit()
    finally:
        engine.dispose()
