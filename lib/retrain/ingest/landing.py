"""The landing zone: arrivals are claimed, then archived once their snapshot is committed, or quarantined.

Life of a landed file ``landing/<dataset>/<name>``:

1. *claim*: renamed to ``work/ingest/<run>/<dataset>/<name>`` so no other run picks it up; a retry of the
   same run finds it there;
2. the ingest builds and commits a snapshot (see :mod:`retrain.snapshots`);
3. *archive*: renamed to ``archive/<dataset>/<version>/<name>``; or, if it cannot be parsed,
   *quarantine*: renamed to ``quarantine/<dataset>/<name>`` with ``<name>.reason.json`` beside it.

A landed file is never deleted, and it leaves the landing zone only by rename.

On an object store there is no rename: every move is copy-then-delete (see :func:`retrain.storage.move`), and
a folder (an image drop, a tick partition) is complete once its ``_SUCCESS`` object exists, written last by
:func:`land`; until then it is not pending. A claim that crashed half-way is finished by the retry.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timezone

from retrain import storage
from retrain.assets import data_asset
from retrain.errors import DataFormatError, LandingPathError
from retrain.settings import get_settings

log = logging.getLogger(__name__)
DROP_COMPLETE = "_SUCCESS"  # on object stores: written last into a landed folder, so a drop appears at once


def landing_folder(dataset: str) -> str:
    return get_settings().landing(data_asset(dataset).name)


def pending(dataset: str) -> list[str]:
    """Names waiting in the landing folder, in name order; dotfiles are uploads in progress, and on an object
    store a folder waits until its ``_SUCCESS`` marker is there."""
    folder = landing_folder(dataset)
    if storage.is_local(folder):
        return [n for n in storage.listdir(folder) if not n.startswith(".")]
    names, complete = set(), set()
    for info in storage.list_files(folder):
        relative = info.location[len(folder) + 1:]
        top, _, rest = relative.partition("/")
        if top.startswith("."):
            continue
        if not rest:
            names.add(top)
        elif rest == DROP_COMPLETE:
            complete.add(top)
    return sorted(names | complete)


def data_files(folder: str) -> list[str]:
    """Names of the data files of a landed folder (its completion marker left out)."""
    return [n for n in storage.listdir(folder) if n != DROP_COMPLETE and not n.startswith(".")]


def land(dataset: str, source: str, name: str | None = None) -> str:
    """Copy a file, or a folder (an image drop), into the landing zone atomically: it appears under its
    final name only once complete (hidden staging name, then rename). Returns its location.

    ``name`` (default: the source's own name) must be a plain name: a path, ``.``/``..``, a hidden name or
    control characters raise :class:`LandingPathError` before anything in the landing zone changes."""
    target = storage.safe_child(landing_folder(dataset), storage.name(source) if name is None else name)
    if storage.isdir(source):
        with storage.staged_directory(target) as staging:
            for child in data_files(source):
                storage.copy(storage.join(source, child), storage.join(staging, child))
            if not storage.is_local(target):
                storage.write_bytes(storage.join(target, DROP_COMPLETE), b"")  # last: the drop is complete
    else:
        storage.copy(source, target)
    return target


def claim(dataset: str, file_name: str, run_id: str) -> str:
    """Move a landed file into this run's work folder (idempotent for retries). Returns the claimed location."""
    source = storage.safe_child(landing_folder(dataset), file_name)
    claimed = storage.safe_child(get_settings().ingest_work(run_id, dataset), file_name)
    if storage.is_local(source):
        if storage.exists(claimed):
            return claimed  # a rename is atomic: a file of this name in landing now is a new arrival
    elif storage.exists(source):
        # copy-then-delete: a source still there means the claim did not finish (or never started); repeat it
        storage.move(source, claimed)
        return claimed
    elif storage.exists(claimed):
        return claimed
    if not storage.exists(source):
        raise LandingPathError(f"{source}: landed file is gone and was not claimed by run {run_id!r}")
    storage.move(source, claimed)
    return claimed


def archived_versions(dataset: str, file_name: str) -> list[str]:
    """Versions whose archive holds a file of this name (a retry looks here once its file was archived)."""
    folder = get_settings().archive(dataset)
    return [v for v in storage.listdir(folder) if storage.exists(storage.join(folder, v, file_name))]


def committed_by_run(dataset: str, file_name: str, run_id: str):
    """The snapshot this run already committed from an archived arrival (a retry after commit and archive,
    before the task recorded success), or None."""
    from retrain import snapshots

    for version in archived_versions(dataset, file_name):
        existing = snapshots.load(dataset, version)
        if existing is not None and existing.manifest.get("produced_by", {}).get("run_id") == run_id:
            return existing
    return None


def archive(dataset: str, claimed: str, version: str) -> str:
    target = get_settings().archive(dataset, version, storage.name(claimed))
    if storage.exists(claimed):
        storage.move(claimed, target)
    return target


def quarantine(dataset: str, claimed: str, error: DataFormatError | Exception, run_id: str) -> str:
    """Move a bad file aside with a reason file; returns the reason file's location."""
    folder = get_settings().quarantine(dataset)
    file_name = storage.name(claimed)
    target = storage.join(folder, file_name)
    if storage.exists(target):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        target = storage.join(folder, f"{stamp}-{file_name}")
        repeat = 1
        while storage.exists(target):
            repeat += 1
            target = storage.join(folder, f"{stamp}.{repeat}-{file_name}")
    storage.move(claimed, target)
    reason = {
        "dataset": dataset,
        "file": file_name,
        "quarantined_as": target,
        "rule": getattr(error, "rule", type(error).__name__),
        "observed": getattr(error, "observed", str(error)),
        "message": str(error),
        "run_id": run_id,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    reason_file = f"{target}.reason.json"
    storage.write_text(reason_file, json.dumps(reason, indent=2))
    return reason_file


@contextlib.contextmanager
def quarantined_on_format_error(dataset: str, claimed: str, run_id: str) -> Iterator[None]:
    """Parse a claimed arrival inside this block: a :class:`DataFormatError` moves it to quarantine (with its
    reason file) and is raised again, so the task fails at once and nothing is lost."""
    try:
        yield
    except DataFormatError as exc:
        reason = quarantine(dataset, claimed, exc, run_id)
        log.error("quarantined %s: %s (reason: %s)", storage.name(claimed), exc, reason)
        raise
