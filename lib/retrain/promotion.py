"""Promotion decisions: compare a candidate with the champion on the same examples, then decide by policy.

Pure functions over arrays; no MLflow (see :mod:`retrain.registry`) and no Airflow. The comparison is paired:
both models are scored on the *same* held-out examples, and the question is whether the difference is real:

* any metric: a paired bootstrap confidence interval of ``metric(candidate) - metric(champion)``, resampling
  examples (the same resample for both models);
* classifier accuracy: McNemar's exact test on the discordant pairs.

Every decision is reproducible: the bootstrap is seeded from the policy and the inputs are the logged
per-example predictions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from retrain.errors import ConfigError
from retrain.settings import get_settings


class Guardrail(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    direction: Literal["minimize", "maximize"]
    tolerance: float = Field(ge=0)  # how much worse (absolute) the candidate may be


class PromotionPolicy(BaseModel):
    """How a workload's candidates are judged (``configs/promotion.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    primary_metric: str
    direction: Literal["minimize", "maximize"]
    min_improvement: float = Field(0.0, ge=0)  # absolute, in the metric's units
    guardrails: list[Guardrail] = Field(default_factory=list)
    min_eval_examples: int = Field(30, ge=1)
    test: Literal["paired_bootstrap", "mcnemar"] = "paired_bootstrap"
    confidence: float = Field(0.95, gt=0.5, lt=1)
    bootstrap_samples: int = Field(2000, ge=200, le=100_000)
    baseline_metric: str | None = None  # a first model must beat this metric of its own run
    require_approval: bool = False
    approval_timeout_hours: float = Field(24, gt=0)
    seed: int = 20261126

    @model_validator(mode="after")
    def _consistent(self):
        if self.test == "mcnemar" and self.primary_metric not in ("accuracy", "test_accuracy"):
            raise ValueError(f"test 'mcnemar' only judges accuracy, not {self.primary_metric!r}")
        if self.primary_metric not in METRICS:
            raise ValueError(f"primary_metric {self.primary_metric!r} cannot be recomputed from predictions "
                             f"(known: {sorted(METRICS)})")
        expected = "maximize" if self.primary_metric.endswith("accuracy") else "minimize"
        if self.direction != expected:
            raise ValueError(f"{self.primary_metric!r} must be {expected}d, not {self.direction}d")
        return self


# per-example metric functions: (actual, predicted) -> value
def _rmse(actual, predicted):
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def _mae(actual, predicted):
    return float(np.mean(np.abs(predicted - actual)))


def _accuracy(actual, predicted):
    return float(np.mean(predicted == actual))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "rmse": _rmse, "test_rmse": _rmse, "mae": _mae, "test_mae": _mae, "accuracy": _accuracy, "test_accuracy": _accuracy,
}


def metric_function(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(f"metric {name!r} cannot be recomputed from predictions (known: {sorted(METRICS)})") from None


@dataclass(frozen=True)
class Comparison:
    metric: str
    direction: str
    n: int
    candidate: float
    champion: float
    delta: float  # candidate - champion
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    improvement: float  # positive = candidate better, in the metric's units
    guardrails: dict = field(default_factory=dict)  # metric -> {"candidate", "champion", "worse_by", "tolerance"}
    extra: dict = field(default_factory=dict)  # e.g. McNemar's discordant counts

    def as_dict(self) -> dict:
        return asdict(self)


def _better_sign(direction: str) -> int:
    return -1 if direction == "minimize" else 1


def paired_bootstrap(actual, cand, champ, fn, *, samples: int, confidence: float, seed: int):
    """CI of fn(candidate) - fn(champion) over example resamples, and a two-sided bootstrap p-value for 0."""
    rng = np.random.default_rng(seed)
    n = len(actual)
    deltas = np.empty(samples)
    for i in range(samples):
        idx = rng.integers(0, n, n)
        deltas[i] = fn(actual[idx], cand[idx]) - fn(actual[idx], champ[idx])
    alpha = 1 - confidence
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    # share of resamples on the other side of zero from the observed difference, doubled
    observed = fn(actual, cand) - fn(actual, champ)
    if observed == 0:
        p = 1.0
    else:
        p = min(1.0, 2 * float(np.mean(deltas <= 0) if observed > 0 else np.mean(deltas >= 0)))
    return float(low), float(high), p


def mcnemar(actual, cand, champ) -> tuple[float, dict]:
    """Exact McNemar test on the discordant pairs (candidate right / champion wrong and vice versa)."""
    from scipy.stats import binomtest

    cand_right, champ_right = cand == actual, champ == actual
    b = int(np.sum(cand_right & ~champ_right))
    c = int(np.sum(~cand_right & champ_right))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return p, {"candidate_only_right": b, "champion_only_right": c, "both_right": int(np.sum(cand_right & champ_right)),
               "both_wrong": int(np.sum(~cand_right & ~champ_right))}


def compare(actual, candidate_pred, champion_pred, policy: PromotionPolicy,
            guardrail_values: Mapping[str, tuple[float, float]] | None = None) -> Comparison:
    """Score both models on the same examples. ``guardrail_values``: metric -> (candidate, champion) for guardrails
    that cannot be recomputed from predictions; the rest are recomputed here."""
    actual, cand, champ = (np.asarray(a) for a in (actual, candidate_pred, champion_pred))
    if not (len(actual) == len(cand) == len(champ)):
        raise ValueError(f"paired comparison needs equal lengths (actual {len(actual)}, candidate {len(cand)}, champion {len(champ)})")
    fn = metric_function(policy.primary_metric)
    cand_value, champ_value = fn(actual, cand), fn(actual, champ)
    delta = cand_value - champ_value
    extra: dict = {}
    if policy.test == "mcnemar":
        p, extra = mcnemar(actual, cand, champ)
        low, high, _ = paired_bootstrap(actual, cand, champ, fn, samples=policy.bootstrap_samples,
                                        confidence=policy.confidence, seed=policy.seed)
    else:
        low, high, p = paired_bootstrap(actual, cand, champ, fn, samples=policy.bootstrap_samples,
                                        confidence=policy.confidence, seed=policy.seed)
    guards = {}
    for guard in policy.guardrails:
        if guardrail_values and guard.metric in guardrail_values:
            g_cand, g_champ = guardrail_values[guard.metric]
        else:
            g_fn = metric_function(guard.metric)
            g_cand, g_champ = g_fn(actual, cand), g_fn(actual, champ)
        worse_by = (g_cand - g_champ) * -_better_sign(guard.direction)
        guards[guard.metric] = {"candidate": g_cand, "champion": g_champ, "worse_by": worse_by, "tolerance": guard.tolerance}
    return Comparison(metric=policy.primary_metric, direction=policy.direction, n=len(actual), candidate=cand_value,
                      champion=champ_value, delta=delta, ci_low=low, ci_high=high, p_value=p, test=policy.test,
                      improvement=delta * _better_sign(policy.direction), guardrails=guards, extra=extra)


@dataclass(frozen=True)
class Decision:
    promote: bool
    outcome: str  # promoted | rejected | first_model | awaiting_approval
    reasons: list[str]
    comparison: Comparison | None = None

    def as_dict(self) -> dict:
        return {"promote": self.promote, "outcome": self.outcome, "reasons": self.reasons,
                "comparison": self.comparison.as_dict() if self.comparison else None}


def decide(policy: PromotionPolicy, *, quality_verdict: str, n_examples: int, comparison: Comparison | None,
           candidate_metrics: Mapping[str, float], champion_exists: bool) -> Decision:
    """The decision table. Reasons are written for a reviewer reading the model version in the MLflow UI."""
    if quality_verdict != "passed":
        return Decision(False, "rejected", [f"quality gate verdict is {quality_verdict!r}; only data that passed is promoted"])
    if n_examples < policy.min_eval_examples:
        return Decision(False, "rejected", [f"evaluation has {n_examples} examples; the policy needs at least {policy.min_eval_examples}"])
    if not champion_exists:
        metric = candidate_metrics.get(policy.primary_metric)
        baseline = candidate_metrics.get(policy.baseline_metric) if policy.baseline_metric else None
        if metric is None or (policy.baseline_metric and baseline is None):
            return Decision(False, "rejected", [f"first model: run lacks {policy.primary_metric!r} or baseline {policy.baseline_metric!r}"])
        if baseline is not None:
            beats = metric < baseline if policy.direction == "minimize" else metric > baseline
            if not beats:
                return Decision(False, "rejected", [f"first model: {policy.primary_metric} {metric:.4g} does not beat the naive baseline {baseline:.4g}"])
            return Decision(True, "first_model", [f"first model: {policy.primary_metric} {metric:.4g} beats the naive baseline {baseline:.4g}"])
        return Decision(True, "first_model", ["first model of this name, gate passed"])
    assert comparison is not None
    reasons = []
    level = round(policy.confidence * 100)
    broken = [f"guardrail {m}: worse by {g['worse_by']:.4g} > tolerance {g['tolerance']:.4g}"
              for m, g in comparison.guardrails.items()
              if g["worse_by"] > g["tolerance"] and not math.isclose(g["worse_by"], g["tolerance"], rel_tol=1e-9, abs_tol=1e-12)]
    # the CI is of candidate - champion; "better" means the whole interval lies on the improving side
    if policy.direction == "minimize":
        significant = comparison.ci_high < 0
    else:
        significant = comparison.ci_low > 0
    if policy.test == "mcnemar":
        significant = significant and comparison.p_value < 1 - policy.confidence
    summary = (f"{comparison.metric}: candidate {comparison.candidate:.4g} vs champion {comparison.champion:.4g} "
               f"(Δ {comparison.delta:+.4g}, {level}% CI [{comparison.ci_low:+.4g}, {comparison.ci_high:+.4g}], "
               f"p={comparison.p_value:.3g}, n={comparison.n})")
    reasons.append(summary)
    if comparison.improvement <= 0:
        reasons.append("candidate is not better than the champion")
    elif not significant:
        reasons.append(f"improvement is within noise at {level}% confidence")
    elif comparison.improvement < policy.min_improvement:
        reasons.append(f"improvement {comparison.improvement:.4g} is below the policy minimum {policy.min_improvement:.4g}")
    reasons += broken
    promote = comparison.improvement > 0 and significant and comparison.improvement >= policy.min_improvement and not broken
    return Decision(promote, "promoted" if promote else "rejected", reasons, comparison)


@functools.cache
def load_policies() -> dict[str, PromotionPolicy]:
    """Policies per registered model from ``configs/promotion.yaml``; unknown keys and impossible values fail."""
    from retrain import config

    cfg = config.load("promotion")
    path = get_settings().config_dir / "promotion.yaml"
    policies = {}
    for model, spec in cfg.models.items():
        try:
            policies[model] = PromotionPolicy.model_validate({**cfg.policy_defaults, **(spec or {})})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" if e["loc"]
                                 else e["msg"] for e in exc.errors())
            raise ConfigError(f"{path}: models.{model}: {problems}") from None
    return policies


def policy_for(model: str) -> PromotionPolicy:
    policies = load_policies()
    if model not in policies:
        raise ConfigError(f"configs/promotion.yaml: no policy for model {model!r} (known: {sorted(policies)})")
    return policies[model]


def is_finite(value: float) -> bool:
    return value is not None and math.isfinite(value)
