"""Typed errors. Each message names the thing, the rule and the observed value."""

from __future__ import annotations


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
    """A landing file name resolves outside the landing folder."""


class SnapshotError(RetrainError):
    """A curated snapshot is missing, incomplete or does not match its manifest."""


class DataQualityError(RetrainError):
    """A snapshot failed its quality gate. Never retried: the data will not change."""

    def __init__(self, dataset: str, version: str, failures: list[dict], report_path: str | None = None):
        self.dataset, self.version, self.failures, self.report_path = dataset, version, failures, report_path
        lines = [f"{dataset} snapshot {version} failed {len(failures)} expectation(s):"]
        lines += [f"  - {f['expectation']} on {f['column']}: {f['rule']} (observed: {f['observed']})" for f in failures]
        if report_path:
            lines.append(f"  report: {report_path}")
        super().__init__("\n".join(lines))
