"""One storage layer for local paths and object-store URIs.

Locations are plain strings: a local path (``/data/curated/x``) or a URI (``s3://bucket/curated/x``). Local
paths go through fsspec's local filesystem; ``s3://`` goes through Airflow's ``ObjectStoragePath`` so the
amazon provider's ``aws_default`` connection (or ``RETRAIN_STORAGE_CONN_ID``) supplies credentials and endpoint.

Atomicity: :func:`write_bytes` replaces a file in one step, and :func:`staged_directory` builds a directory
under a temporary name and renames it into place. Object stores have no rename, so there the contract is
"manifest last": a snapshot exists only once its manifest does (see :mod:`retrain.snapshots`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import unquote

from retrain.errors import LandingPathError

_CHUNK = 1 << 20


def is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


def _local(location: str) -> Path:
    return Path(from_uri(location))


def _remote(location: str):
    """(fsspec filesystem, path) for an object-store URI, through the amazon provider's connection."""
    from airflow.sdk import ObjectStoragePath  # only the scale-out profile pays for this import

    conn_id = os.environ.get("RETRAIN_STORAGE_CONN_ID", "aws_default")
    path = ObjectStoragePath(location, conn_id=conn_id)
    return path.fs, path.path if hasattr(path, "path") else location.split("://", 1)[1]


def from_uri(uri: str) -> str:
    """The location a ``file://`` or object-store URI names (``file://`` becomes a plain local path)."""
    return unquote(uri[len("file://"):]) if uri.startswith("file://") else uri


def join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *[p.strip("/") for p in parts if p]])


def name(location: str) -> str:
    return posixpath.basename(location.rstrip("/"))


def parent(location: str) -> str:
    return posixpath.dirname(location.rstrip("/"))


def safe_child(folder: str, file_name: str) -> str:
    """``folder/file_name``, refusing names that would leave ``folder`` (``../x``, ``/etc/x``, ``a/../../x``)."""
    pure = PurePosixPath(file_name)
    if not file_name or pure.is_absolute() or ".." in pure.parts or "\\" in file_name or "\x00" in file_name:
        raise LandingPathError(
            f"{file_name!r}: landing file names must stay inside {folder} (rule: no absolute paths or '..')"
        )
    return join(folder, file_name)


def exists(location: str) -> bool:
    if is_local(location):
        return _local(location).exists()
    fs, path = _remote(location)
    return fs.exists(path)


def listdir(location: str) -> list[str]:
    """Names directly inside a folder, sorted; an absent folder is empty."""
    if is_local(location):
        folder = _local(location)
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    fs, path = _remote(location)
    if not fs.exists(path):
        return []
    return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


def isdir(location: str) -> bool:
    if is_local(location):
        return _local(location).is_dir()
    fs, path = _remote(location)
    return fs.isdir(path)


def size(location: str) -> int:
    if is_local(location):
        return _local(location).stat().st_size
    fs, path = _remote(location)
    return int(fs.size(path))


def makedirs(location: str) -> None:
    if is_local(location):
        _local(location).mkdir(parents=True, exist_ok=True)
    # object stores have no folders


@contextlib.contextmanager
def open_read(location: str) -> Iterator[IO[bytes]]:
    if is_local(location):
        with open(_local(location), "rb") as handle:
            yield handle
    else:
        fs, path = _remote(location)
        with fs.open(path, "rb") as handle:
            yield handle


def read_bytes(location: str) -> bytes:
    with open_read(location) as handle:
        return handle.read()


def read_text(location: str) -> str:
    return read_bytes(location).decode("utf-8")


def write_bytes(location: str, data: bytes) -> None:
    """Write a whole file atomically: readers see the old content or the new, never a part."""
    if is_local(location):
        target = _local(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    else:
        fs, path = _remote(location)
        fs.pipe_file(path, data)  # a single PUT is atomic on S3


def write_text(location: str, text: str) -> None:
    write_bytes(location, text.encode("utf-8"))


def sha256(location: str) -> str:
    digest = hashlib.sha256()
    with open_read(location) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy(src: str, dst: str) -> None:
    """Copy a file; the destination appears atomically."""
    if is_local(src) and is_local(dst):
        target = _local(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        shutil.copyfile(_local(src), tmp)
        os.replace(tmp, target)
    else:
        write_bytes(dst, read_bytes(src))


def move(src: str, dst: str) -> None:
    """Move a file. Locally a rename; elsewhere copy then delete, so the source goes only once the copy exists."""
    if is_local(src) and is_local(dst):
        target = _local(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(_local(src), target)
    else:
        copy(src, dst)
        remove(src)


def remove(location: str, recursive: bool = False) -> None:
    if is_local(location):
        path = _local(location)
        if path.is_dir():
            if recursive:
                shutil.rmtree(path)
            else:
                path.rmdir()
        elif path.exists():
            path.unlink()
    else:
        fs, path = _remote(location)
        if fs.exists(path):
            fs.rm(path, recursive=recursive)


@contextlib.contextmanager
def local_path(location: str) -> Iterator[Path]:
    """A local file path for libraries that only take paths; remote files are downloaded to a temp file."""
    if is_local(location):
        yield _local(location)
        return
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / name(location)
        target.write_bytes(read_bytes(location))
        yield target


@contextlib.contextmanager
def staged_directory(final: str) -> Iterator[str]:
    """Build a directory under a temporary name, then put it in place in one step.

    Locally the staging folder is a sibling renamed over ``final`` on success and removed on failure. On an
    object store there is no rename: files are written in place and the caller commits by writing the
    manifest last.
    """
    if not is_local(final):
        yield final
        return
    target = _local(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".staging-{target.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield str(staging)
        if target.exists():
            # A snapshot being rebuilt (same version, e.g. a re-run partition): swap, then drop the old copy.
            retired = target.parent / f".retired-{target.name}-{uuid.uuid4().hex[:8]}"
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
