"""The quality gate: Great Expectations suites from ``expectations/`` run on the exact snapshot an event names.

This is the only module that imports Great Expectations. A gate validates one pandas frame (the snapshot's
rows plus any derived columns the dataset's ``quality_frame`` adds) against ``expectations/<dataset>.json``,
writes a JSON and a Markdown report, and raises :class:`~retrain.errors.DataQualityError` listing every
failed expectation with its rule and observed value. A suite may hold expectations of another scope
(``meta.scope``: ``window``, validated on a training window's examples) and take values from its caller
(``{"$PARAMETER": name}``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from retrain import storage
from retrain.errors import ConfigError, DataQualityError
from retrain.settings import get_settings

log = logging.getLogger(__name__)

# Map expectations report a few offending values; aggregate ones report the observed statistic.
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 5}


@dataclass(frozen=True)
class GateReport:
    dataset: str
    version: str
    success: bool
    evaluated: int
    failures: list[dict]
    results: list[dict]
    seconds: float
    json_path: str | None = None
    markdown_path: str | None = None

    @property
    def verdict(self) -> str:
        return "passed" if self.success else "failed"

    def summary(self) -> dict:
        return {
            "dataset": self.dataset,
            "version": self.version,
            "verdict": self.verdict,
            "evaluated": self.evaluated,
            "failed": len(self.failures),
            "json_path": self.json_path,
            "markdown_path": self.markdown_path,
        }


def suite_path(dataset: str) -> Path:
    return get_settings().expectations_dir / f"{dataset}.json"


@functools.cache
def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every pandas batch under 1 GB by hashing all of it (0.24 s on 2 M power rows, a third
    # of the whole validation); the fingerprint only labels the batch in GX's own result store, which an
    # ephemeral context never keeps. Batches are identified here by the snapshot's sha256 instead.
    pandas_execution_engine.HASH_THRESHOLD = 0
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return gx, context


PARTITION, WINDOW = "partition", "window"  # the scopes of an expectation (meta.scope; none = partition)


@functools.cache
def load_suite(dataset: str, scope: str = PARTITION):
    """The dataset's suite as a GX ``ExpectationSuite`` (unknown expectation types are a ConfigError): the
    expectations of ``scope``. An expectation's ``meta.scope`` says what it validates: ``partition`` (the
    default: a snapshot or one partition) or ``window`` (a training window's prepared examples, ticks)."""
    gx, _ = _gx()
    from great_expectations.expectations.registry import get_expectation_impl

    path = suite_path(dataset)
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no expectation suite for dataset {dataset!r}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    expectations = []
    for index, entry in enumerate(spec.get("expectations", [])):
        meta = entry.get("meta") or {}
        if meta.get("scope", PARTITION) not in (PARTITION, WINDOW):
            raise ConfigError(f"{path}: expectation #{index} ({entry.get('type')!r}): meta.scope must be "
                              f"{PARTITION!r} or {WINDOW!r} (got {meta['scope']!r})")
        if meta.get("scope", PARTITION) != scope:
            continue
        try:
            impl = get_expectation_impl(entry["type"])
            expectations.append(impl(**entry.get("kwargs", {}), meta=meta))
        except Exception as exc:  # GX raises several types for bad configurations
            raise ConfigError(f"{path}: expectation #{index} ({entry.get('type')!r}) is invalid: {exc}") from None
    return gx.ExpectationSuite(name=spec.get("name", dataset), expectations=expectations, meta=spec.get("meta") or {})


def suite_parameters(suite) -> set[str]:
    """The names a suite's expectations take from the caller (``{"$PARAMETER": name}`` in a kwarg)."""
    return {value["$PARAMETER"] for expectation in suite.expectations
            for value in expectation.configuration.kwargs.values()
            if isinstance(value, dict) and "$PARAMETER" in value}


def _describe(result) -> dict:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "result_format")}
    outcome = result.result or {}
    bounds = ", ".join(f"{k}={kwargs[k]}" for k in ("min_value", "max_value", "mostly", "value_set", "type_list")
                       if k in kwargs)
    if config.type.startswith("expect_column_distinct_values") and _set_difference(outcome):
        observed = _set_difference(outcome)
    elif "observed_value" in outcome:
        observed = outcome["observed_value"]
    elif "unexpected_count" in outcome:
        observed = (
            f"{outcome.get('unexpected_count')} unexpected ({outcome.get('unexpected_percent') or 0:.3g}%), "
            f"e.g. {outcome.get('partial_unexpected_list', [])[:5]}"
        )
    else:
        observed = str(result.exception_info.get("exception_message") if result.exception_info else outcome)
    meta = config.meta or {}
    return {
        "expectation": config.type,
        "column": kwargs.get("column", "table"),
        "rule": meta.get("rule", config.type) + (f" [{bounds}]" if bounds else ""),
        "observed": _jsonable(observed),
        "success": bool(result.success),
    }


def _set_difference(outcome: dict) -> str | None:
    """What a set expectation found (GX observes no value for them): the values missing from the set and
    those outside it, e.g. ``missing [GOOG], unexpected [TSLA]``."""
    if outcome.get("observed_value") is not None:
        return None
    found = [f"{word} [{', '.join(sorted(map(str, outcome[key])))}]"
             for word, key in (("missing", "partial_missing_list"), ("unexpected", "partial_unexpected_list"))
             if outcome.get(key)]
    return ", ".join(found) or None


def _jsonable(value):
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()  # a numpy scalar, as the number it is
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def validate(dataset: str, frame, *, version: str, report_dir: str | None = None, scope: str = PARTITION,
             parameters: dict | None = None) -> GateReport:
    """Validate ``frame`` with the dataset's suite (its expectations of ``scope``); write reports when
    ``report_dir`` is given. ``parameters``: the values the suite names as ``{"$PARAMETER": name}`` (the tick
    suite's symbols come from the feed settings)."""
    gx, context = _gx()
    suite = load_suite(dataset, scope)
    missing = suite_parameters(suite) - set(parameters or {})
    if missing:
        raise ConfigError(f"{suite_path(dataset)}: the suite takes {sorted(missing)} from its caller, "
                          f"which gave {sorted(parameters or {})}")
    source_name = f"retrain_{dataset}"
    try:
        source = context.data_sources.get(source_name)
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas(source_name)
    try:
        asset = source.get_asset("snapshot")
    except LookupError:
        asset = source.add_dataframe_asset("snapshot")
    try:
        batch_definition = asset.get_batch_definition("whole")
    except KeyError:
        batch_definition = asset.add_batch_definition_whole_dataframe("whole")

    from great_expectations.validator.v1_validator import Validator

    started = time.perf_counter()
    validator = Validator(batch_definition, result_format=_RESULT_FORMAT, batch_parameters={"dataframe": frame})
    outcome = validator.validate_expectation_suite(suite, parameters or None)
    seconds = time.perf_counter() - started

    results = [_describe(r) for r in outcome.results]
    failures = [r for r in results if not r["success"]]
    report = GateReport(
        dataset=dataset,
        version=version,
        success=bool(outcome.success),
        evaluated=len(results),
        failures=failures,
        results=results,
        seconds=seconds,
    )
    if report_dir:
        report = _write_reports(report, outcome, report_dir)
    log.info("quality gate %s %s: %s (%d/%d passed, %.2fs)", dataset, version, report.verdict,
             report.evaluated - len(failures), report.evaluated, seconds)
    return report


def _write_reports(report: GateReport, outcome, report_dir: str) -> GateReport:
    json_path = storage.join(report_dir, "quality_report.json")
    md_path = storage.join(report_dir, "quality_report.md")
    storage.write_text(json_path, json.dumps({"summary": report.summary() | {"seconds": round(report.seconds, 3)},
                                              "results": report.results,
                                              "great_expectations": outcome.to_json_dict()}, indent=2, default=str))
    lines = [
        f"# Quality gate: {report.dataset} snapshot `{report.version}`",
        "",
        f"**Verdict: {report.verdict.upper()}** — {report.evaluated - len(report.failures)} of {report.evaluated} "
        f"expectations met ({report.seconds:.2f} s, Great Expectations suite `expectations/{report.dataset}.json`).",
        "",
        "| | expectation | column | rule | observed |",
        "|---|---|---|---|---|",
    ]
    for r in report.results:
        mark = "✅" if r["success"] else "❌"
        observed = str(r["observed"]).replace("|", "\\|")
        lines.append(f"| {mark} | `{r['expectation']}` | {r['column']} | {r['rule']} | {observed} |")
    storage.write_text(md_path, "\n".join(lines) + "\n")
    return GateReport(**{**report.__dict__, "json_path": json_path, "markdown_path": md_path})


def enforce(report: GateReport) -> GateReport:
    """Raise :class:`DataQualityError` when the gate failed."""
    if not report.success:
        raise DataQualityError(report.dataset, report.version, report.failures, report.markdown_path or report.json_path)
    return report
