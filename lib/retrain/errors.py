"""Typed errors. Each message names the thing, the rule and the observed value."""

from __future__ import annotations

import errno


class RetrainError(Exception):
    """Base class for every error the library raises on purpose."""


class ConfigError(RetrainError):
    """A configuration file is missing, malformed or holds an impossible value."""


class DataFormatError(RetrainError):
    """A landed file cannot be parsed: wrong header, delimiter, value or truncation."""

    def __init__(self, file: str, rule: str, observed: str):
        self.file, self.rule, self.observed = file, rule, observed
        super().__init__(f"{file}: {rule} (observed: {observed})")


class LandingPathError(RetrainError):
    """A landing file name is not a plain name (a path, ``.``/``..``, hidden, control characters), or a landed
    file is not where its name says."""


class UsageError(RetrainError):
    """A command's arguments ask for something impossible (a range that runs backwards, a day not yet over);
    nothing was changed. The CLI answers it in one line with exit 2."""


class PromotionError(RetrainError):
    """A candidate cannot be judged now (for example its run has not finished yet); another try may succeed."""


class CandidateError(PromotionError):
    """A candidate can never be judged: its MLflow run does not exist or failed, its model cannot be loaded, or
    no evaluation set is known for its model. Another try cannot fix it: the task fails at once."""


class SnapshotError(RetrainError):
    """A curated snapshot is missing, incomplete or does not match its manifest."""


class DataQualityError(RetrainError):
    """A snapshot failed its quality gate. Never retried: the data will not change."""

    def __init__(self, dataset: str, version: str, failures: list[dict], report_path: str | None = None, *,
                 what: str = "snapshot", rejects: list[str] | None = None):
        """``failures``: dicts with ``rule`` and ``observed``, and ``partition`` (a failure of one partition of
        a window, or of the window itself) or ``expectation`` and ``column``; ``what``: what ``version`` names
        (a snapshot, or a window of partitions); ``rejects``: the versions no run can train now, as the
        freshness ledger names them (default: ``version``; a tick window: its digest and the partition versions
        that failed their own rules)."""
        unique = list({_failure_line(f): f for f in failures}.items())  # a failure repeated says nothing more
        self.dataset, self.version, self.failures, self.report_path = dataset, version, [f for _, f in unique], report_path
        self.rejects = list(rejects) if rejects else [version]
        lines = [f"{dataset} {what} {version} failed {len(unique)} expectation(s):"]
        lines += [f"  - {line}" for line, _ in unique]
        if report_path:
            lines.append(f"  report: {report_path}")
        super().__init__("\n".join(lines))


def _failure_line(failure: dict) -> str:
    if "partition" in failure:  # the partition first, then the rule and its observed value, once
        return f"{failure['partition']}: {failure['rule']} (observed: {failure['observed']})"
    return f"{failure['expectation']} on {failure['column']}: {failure['rule']} (observed: {failure['observed']})"


_RETRYABLE_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                     errno.ENETUNREACH, errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EAGAIN}
_SERVER_ERROR_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


def is_infrastructure_error(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, says a service or the machine failed (a connection
    refused or timed out, a server error, a full disk), which another try may get past.

    MLflow's client wraps an unreachable server as ``MlflowException("API request to ... failed ...")``, and an
    error answered by the server as ``RestException`` with the server's error code."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError, MemoryError)):
            return True
        if isinstance(exc, OSError) and exc.errno in _RETRYABLE_ERRNOS:
            return True
        if type(exc).__module__.split(".")[0] in ("requests", "urllib3", "botocore", "http"):
            return True
        if str(exc).startswith("API request to "):
            return True
        if type(exc).__name__ == "RestException" and getattr(exc, "error_code", None) in _SERVER_ERROR_CODES:
            return True
        exc = exc.__cause__ or exc.__context__
    return False
