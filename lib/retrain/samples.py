"""Sample data for the four datasets, in their real on-disk formats, as a user would land it.

Each writer puts one *drop* (what ``retrain land DATASET PATH`` takes) at ``target``: a UCI power text file,
an MNIST drop folder (four IDX files), a CIFAR-10 drop folder (binary batches + ``batches.meta.txt``), or a
tick partition folder ``date=YYYY-MM-DD/`` holding one CSV. Writes are atomic (a half-written drop is never
seen), and the same arguments always give the same bytes.
"""

from __future__ import annotations

from datetime import date, datetime

from retrain import storage


def _write_drop(target: str, files: dict[str, bytes]) -> str:
    with storage.staged_directory(target) as staging:
        for name, data in files.items():
            storage.write_bytes(storage.join(staging, name), data)
    return target


POWER_START = datetime(2006, 12, 16, 17, 24)  # the first reading of the real UCI file


def power(target: str, *, rows: int | None = None, days: float | None = None, start: datetime | None = None,
          seed: int = 0, level: float = 1.0) -> str:
    """One UCI ``household_power_consumption.txt``-format file: ``rows`` one-minute readings (or ``days`` of
    them) from ``start``. ``seed`` and ``level`` are the household; files with consecutive ``start``s are
    consecutive increments of its one series (each file's own noise follows from the household and its start,
    so the same arguments always give the same bytes)."""
    from retrain.data.power import generate_power

    if (rows is None) == (days is None):
        raise ValueError("give exactly one of rows and days")
    start = start or POWER_START
    rows = int(rows if rows is not None else round(days * 1440))
    noise = seed * 1_000_003 + int((start - POWER_START).total_seconds() // 60)
    storage.write_bytes(target, generate_power(rows, start=start, seed=abs(noise), level=level))
    return target


def mnist(target: str, *, n_train: int, n_test: int, seed: int = 0, offset: int = 0, gz: bool = False) -> str:
    """An MNIST drop: train/test images and labels in IDX format (``offset`` continues an earlier batch)."""
    from retrain.data.mnist import generate_mnist

    return _write_drop(target, generate_mnist(n_train, n_test, seed, offset=offset, gz=gz))


def cifar10(target: str, *, n_per_batch: int, n_batches: int = 1, n_test: int = 200, seed: int = 0,
            offset: int = 0) -> str:
    """A CIFAR-10 drop: ``data_batch_*.bin``, ``test_batch.bin``, ``batches.meta.txt`` (binary version)."""
    from retrain.data.cifar10 import generate_cifar10

    return _write_drop(target, generate_cifar10(n_per_batch, n_batches, n_test, seed, offset=offset))


def ticks(folder: str, *, start: date, days: int, ticks_per_day: int, symbols: list[str] | None = None,
          seed: int = 0, profile: str = "equities", stale_quotes_after: float | None = None) -> list[str]:
    """``days`` tick partitions from ``start`` in the raw shape of ``profile`` (``tick_generator.PROFILES``):
    ``folder/date=YYYY-MM-DD/ticks.csv`` each; returns the folders. A day the profile's market is closed (FX:
    the sessions ending on Saturday and Sunday) gets none. ``stale_quotes_after`` minutes: crypto quotes stop
    updating that long into each day."""
    from datetime import timedelta

    from retrain.errors import UsageError

    shape = _tick_profile(profile)
    options = {} if stale_quotes_after is None else {"stale_quotes_after": stale_quotes_after}
    try:
        shape.check(options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    written = []
    for i in range(days):
        day = start + timedelta(days=i)
        if shape.trades_on(day):
            data = shape.csv(day, symbols, ticks_per_day, seed=seed + i, **options)
            written.append(_write_drop(storage.join(folder, f"date={day.isoformat()}"), {"ticks.csv": data}))
    return written


def _tick_profile(name: str):
    from retrain.data import tick_generator
    from retrain.errors import UsageError

    try:
        return tick_generator.PROFILES[name]
    except KeyError:
        raise UsageError(f"no tick profile {name!r} (known: {', '.join(tick_generator.PROFILES)})") from None


def tick_feed_advice(profile: str, symbols: list[str] | None = None) -> str | None:
    """What to set in ``configs/feeds.yaml`` to read ``profile``'s files (with ``symbols``), or None when the
    current settings fit them already."""
    from retrain import config
    from retrain.data import tick_generator
    from retrain.errors import ConfigError
    from retrain.settings import get_settings

    wanted = _tick_profile(profile).feed(symbols)
    try:
        current = config.feed("ticks")
    except ConfigError:
        current = None  # none or broken: every setting is news
    changed = tick_generator.feed_changes(wanted, current)
    if not changed:
        return None
    return (f"the {profile} files need feed settings that differ from {get_settings().config_dir / 'feeds.yaml'} "
            f"({', '.join(changed)}); set there:\n{tick_generator.feed_yaml(wanted)}")
