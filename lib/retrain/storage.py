"""One storage layer for local paths and object-store URIs.

Locations are plain strings: a local path (``/data/curated/x``) or a URI (``s3://bucket/curated/x``). Local
paths use the OS; ``s3://`` goes through one boto3 S3 client, built by the client factory handed in with
:func:`configure`. Inside Airflow that is the glue's (:mod:`retrain.airflow.connections`: the Airflow connection
``aws_default``, or ``RETRAIN_STORAGE_CONN_ID``, supplies credentials, region and endpoint); elsewhere (the
``retrain`` CLI on a box without a scheduler) it is :func:`environment_client`, the standard AWS settings
(``AWS_*`` variables or files, a role; ``AWS_ENDPOINT_URL`` for S3-compatible stores). Missing credentials
are a :class:`StorageConnectionError` naming what is missing, never a silent fall-back to anonymous access.

Atomicity: :func:`write_bytes` replaces a file in one step, and :func:`staged_directory` builds a directory
under a temporary name and renames it into place. Object stores have no rename, so there the contract is
"manifest last": a snapshot exists only once its manifest does (see :mod:`retrain.snapshots`), and
:func:`move` is copy-then-delete: the source goes only once every copy exists, so a retry after a crash at
any point simply repeats the move.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import tempfile
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote

from retrain.errors import ConfigError, LandingPathError
from retrain.settings import get_settings

_CHUNK = 1 << 20
_SPOOL = 64 << 20  # remote reads stay in memory up to this size, then spill to a temporary file


class StorageConnectionError(ConfigError):
    """The object store's connection is missing or gives no credentials (a retry cannot fix it)."""


@dataclass(frozen=True)
class FileInfo:
    location: str
    size: int
    modified: datetime
    etag: str | None  # object stores only (unquoted)


def is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


def _local(location: str) -> Path:
    return Path(from_uri(location))


def _s3(location: str) -> tuple[_S3, str, str]:
    """(store, bucket, key) for an ``s3://`` URI."""
    scheme, _, rest = location.partition("://")
    if scheme not in ("s3", "s3a"):
        raise ConfigError(f"{location}: unsupported storage scheme {scheme!r} (rule: local paths, file:// or s3://)")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ConfigError(f"{location}: an s3:// location must name a bucket")
    return _store(), bucket, key.strip("/")


def conn_id() -> str:
    """The connection that reaches the object store (an Airflow connection id, for the glue's factory)."""
    return get_settings().storage_conn_id


# conn id -> a boto3 S3 client; raises StorageConnectionError when it cannot give one with credentials
ClientFactory = Callable[[str], Any]


def environment_client(conn: str):
    """The default client factory, outside Airflow: a boto3 S3 client from the standard AWS settings (``AWS_*``
    variables, shared files, a role; ``AWS_ENDPOINT_URL`` for S3-compatible stores). ``conn`` is unused."""
    import boto3  # only the scale-out profile pays for this import

    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise StorageConnectionError(
            "the AWS environment yields no credentials (rule: an s3:// data root outside Airflow needs "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a role; anonymous access is refused)")
    return session.client("s3")


_client_factory: ClientFactory = environment_client


def configure(client_factory: ClientFactory | None) -> None:
    """Hand in how object-store clients are built (:mod:`retrain.airflow` does, with the Airflow connection);
    None restores :func:`environment_client`. Cached clients are dropped."""
    global _client_factory
    _client_factory = client_factory or environment_client
    _STORES.clear()


def _store() -> _S3:
    conn = conn_id()
    # keyed on the environment that defines the client too, so a changed AWS_* or AIRFLOW_CONN_* variable (tests,
    # a new endpoint) gets a new client
    key = (_client_factory, conn, tuple(sorted((k, v) for k, v in os.environ.items()
                                               if k.startswith(("AWS_", f"AIRFLOW_CONN_{conn.upper()}")))))
    store = _STORES.get(key)
    if store is None:
        store = _STORES[key] = _S3(conn, _client_factory(conn))
    return store


def reset_connections() -> None:
    """Forget cached object-store clients (after the connection's definition changed)."""
    _STORES.clear()


class _S3:
    """The object-store calls this module needs, on one boto3 S3 client."""

    def __init__(self, conn: str, client):
        self.conn = conn
        self.client = client

    def head(self, bucket: str, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        if not key:
            return None
        try:
            return self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def pages(self, bucket: str, prefix: str, delimiter: str | None = None):
        kwargs = {"Bucket": bucket, "Prefix": prefix} | ({"Delimiter": delimiter} if delimiter else {})
        yield from self.client.get_paginator("list_objects_v2").paginate(**kwargs)

    def objects(self, bucket: str, key: str) -> list[dict]:
        """Every object under ``key/`` (recursively), as list entries (``Key``, ``Size``, ``ETag``, ...)."""
        prefix = f"{key}/" if key else ""
        return [obj for page in self.pages(bucket, prefix) for obj in page.get("Contents", [])]

    def has_children(self, bucket: str, key: str) -> bool:
        page = self.client.list_objects_v2(Bucket=bucket, Prefix=f"{key}/" if key else "", MaxKeys=1)
        return page.get("KeyCount", 0) > 0

    def delete(self, bucket: str, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            response = self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            if response.get("Errors"):
                raise OSError(f"s3://{bucket}: could not delete {response['Errors'][:3]}")


_STORES: dict[tuple, _S3] = {}


def from_uri(uri: str) -> str:
    """The location a ``file://`` or object-store URI names (``file://`` becomes a plain local path)."""
    return unquote(uri[len("file://"):]) if uri.startswith("file://") else uri


def join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *[p.strip("/") for p in parts if p]])


def name(location: str) -> str:
    return posixpath.basename(location.rstrip("/"))


def parent(location: str) -> str:
    return posixpath.dirname(location.rstrip("/"))


def plain_name_problem(file_name: str) -> str | None:
    """Why ``file_name`` is not a plain file name (one that names a file directly inside a folder), or None.

    Refused: empty, ``.`` and ``..``, any ``/`` or ``\\`` (absolute and nested paths), a leading dot (hidden names
    are uploads in progress and are never ingested), control characters and line breaks, more than 255 bytes."""
    if not file_name:
        return "an empty name"
    if file_name in (".", ".."):
        return f"{file_name!r} names a folder, not a file"
    if "/" in file_name or "\\" in file_name:
        return "a path, not a plain name (no '/' or '\\')"
    if file_name.startswith("."):
        return "a hidden name (a leading '.' marks an upload in progress, never ingested)"
    bad = sorted({c for c in file_name if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")})
    if bad:
        return f"control characters {', '.join(repr(c) for c in bad)}"
    if len(file_name.encode("utf-8", "surrogateescape")) > 255:
        return f"{len(file_name.encode('utf-8', 'surrogateescape'))} bytes long (at most 255)"
    return None


def safe_child(folder: str, file_name: str) -> str:
    """``folder/file_name`` for a plain file name; anything else (``../x``, ``/etc/x``, ``sub/x``, ``.x``, ``.``,
    control characters) is a :class:`LandingPathError` naming the name and the rule."""
    problem = plain_name_problem(file_name)
    if problem:
        raise LandingPathError(f"landing name {file_name!r} in {folder} refused (rule: a plain file name; "
                               f"observed: {problem})")
    return join(folder, file_name)


def exists(location: str) -> bool:
    if is_local(location):
        return _local(location).exists()
    store, bucket, key = _s3(location)
    return store.head(bucket, key) is not None or store.has_children(bucket, key)


def listdir(location: str) -> list[str]:
    """Names directly inside a folder, sorted; an absent folder is empty."""
    if is_local(location):
        folder = _local(location)
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    store, bucket, key = _s3(location)
    prefix = f"{key}/" if key else ""
    names = set()
    for page in store.pages(bucket, prefix, delimiter="/"):
        names.update(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
        names.update(o["Key"][len(prefix):] for o in page.get("Contents", []))
    names.discard("")  # a "folder" placeholder object
    return sorted(names)


def list_files(location: str) -> list[FileInfo]:
    """Every file under a folder, recursively, with size and modification time; an absent folder is empty."""
    if is_local(location):
        folder = _local(location)
        if not folder.is_dir():
            return []
        found = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            stat = path.stat()
            found.append(FileInfo(str(path), stat.st_size, datetime.fromtimestamp(stat.st_mtime, timezone.utc), None))
        return found
    store, bucket, key = _s3(location)
    return [FileInfo(f"s3://{bucket}/{o['Key']}", int(o["Size"]), o["LastModified"], o.get("ETag", "").strip('"'))
            for o in store.objects(bucket, key)]


def isdir(location: str) -> bool:
    if is_local(location):
        return _local(location).is_dir()
    store, bucket, key = _s3(location)
    return store.has_children(bucket, key)


def size(location: str) -> int:
    if is_local(location):
        return _local(location).stat().st_size
    store, bucket, key = _s3(location)
    head = store.head(bucket, key)
    if head is None:
        raise FileNotFoundError(location)
    return int(head["ContentLength"])


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
        body = _s3_body(location)
        # parquet readers seek: spool the object (memory up to _SPOOL bytes, then a temporary file)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as handle:
            shutil.copyfileobj(body, handle, _CHUNK)
            handle.seek(0)
            yield handle


@contextlib.contextmanager
def open_stream(location: str) -> Iterator[IO[bytes]]:
    """A file read front to back, never seeked: an ``s3://`` object streams straight from the store (no spool,
    unlike :func:`open_read`), for copying it somewhere chunk by chunk."""
    if is_local(location):
        with open(_local(location), "rb") as handle:
            yield handle
        return
    body = _s3_body(location)
    try:
        yield body
    finally:
        body.close()


def _s3_body(location: str):
    """The streaming body of an ``s3://`` object (FileNotFoundError when there is none)."""
    store, bucket, key = _s3(location)
    from botocore.exceptions import ClientError

    try:
        return store.client.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            raise FileNotFoundError(location) from None
        raise


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
        store, bucket, key = _s3(location)
        store.client.put_object(Bucket=bucket, Key=key, Body=data)  # a single PUT is atomic on S3


def write_text(location: str, text: str) -> None:
    write_bytes(location, text.encode("utf-8"))


def sha256(location: str) -> str:
    digest = hashlib.sha256()
    with open_read(location) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy(src: str, dst: str) -> None:
    """Copy a file; the destination appears atomically (server-side within one object store)."""
    if is_local(src) and is_local(dst):
        target = _local(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name[:100]}.{uuid.uuid4().hex}.tmp"  # short: the name may be 255 bytes
        try:
            shutil.copyfile(_local(src), tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a failed copy leaves nothing behind
            raise
    elif not is_local(src) and not is_local(dst):
        store, bucket, key = _s3(src)
        _, dst_bucket, dst_key = _s3(dst)
        store.client.copy({"Bucket": bucket, "Key": key}, dst_bucket, dst_key)  # managed: multipart above 8 MB
    else:
        write_bytes(dst, read_bytes(src))


def move(src: str, dst: str) -> None:
    """Move a file or a folder.

    Locally one rename. On an object store: copy every object, then delete the sources; a crash anywhere
    leaves the sources (or what is left of them) in place and every copy made so far intact, so calling
    ``move`` again finishes the job. Raises FileNotFoundError when there is nothing at ``src``.
    """
    if is_local(src) and is_local(dst):
        target = _local(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(_local(src), target)
        return
    if is_local(src) or is_local(dst):
        if isdir(src):
            for child in listdir(src):
                move(join(src, child), join(dst, child))
            remove(src, recursive=True)
        else:
            copy(src, dst)
            remove(src)
        return
    store, bucket, key = _s3(src)
    if store.head(bucket, key) is not None:
        copy(src, dst)
        store.delete(bucket, [key])
        return
    objects = store.objects(bucket, key)
    if not objects:
        raise FileNotFoundError(src)
    for obj in objects:
        copy(f"s3://{bucket}/{obj['Key']}", join(dst, obj["Key"][len(key) + 1:]))
    store.delete(bucket, [obj["Key"] for obj in objects])


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
        store, bucket, key = _s3(location)
        if store.head(bucket, key) is not None:
            store.delete(bucket, [key])
        elif recursive:
            store.delete(bucket, [obj["Key"] for obj in store.objects(bucket, key)])


@contextlib.contextmanager
def local_path(location: str) -> Iterator[Path]:
    """A local file path for libraries that only take paths; remote files are downloaded to a temp file."""
    if is_local(location):
        yield _local(location)
        return
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / name(location)
        with open_stream(location) as body, open(target, "wb") as handle:  # chunk by chunk, never whole in memory
            shutil.copyfileobj(body, handle, _CHUNK)
        yield target


def read_parquet(location: str, columns: list[str] | None = None, filters=None):
    """A parquet file as one Arrow table, read by pyarrow's own file I/O from a path.

    Never from a Python file object: with one, pyarrow's thread pool can abort the interpreter at exit
    ("terminate called without an active exception", exit 134, apache/arrow#50482), after the work succeeded.
    """
    import pyarrow.parquet as pq

    with local_path(location) as path:
        return pq.read_table(path, columns=columns, filters=filters)


def read_frame(location: str):
    """A parquet file as a pandas DataFrame (its index restored), read as :func:`read_parquet` reads."""
    return read_parquet(location).to_pandas()


def write_frame(frame, location: str, *, index: bool | None = None) -> None:
    """Write a DataFrame as one parquet file in one step (``index`` as :meth:`pandas.DataFrame.to_parquet`)."""
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=index)
    write_bytes(location, buffer.getvalue())


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
