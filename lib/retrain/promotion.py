"""Promotion decisions: compare a candidate with the champion on the same examples, then decide by policy.

Pure functions over arrays; no MLflow (see :mod:`retrain.registry`) and no Airflow. The comparison is paired:
both models are scored on the *same* held-out examples, and the question is whether the difference is real:

* any metric: a paired bootstrap confidence interval of ``metric(candidate) - metric(champion)``, resampling
  examples (the same resample for both models);
* classifier accuracy: McNemar's exact test on the discordant pairs.

A first model is judged the same way against its naive baseline's per-example predictions (majority class,
seasonal naive) on the same examples: it becomes champion only when it beats the baseline significantly.

**Power.** Every comparison states the minimum detectable effect (MDE): the smallest true improvement its test
finds with probability ``TARGET_POWER`` (80 %) at its n, by the normal approximation

    MDE = (z_{1-α/2} + z_{power}) · sd / sqrt(n),     α = 1 - confidence,

where ``sd`` is the standard deviation of the per-example paired differences whose mean is the metric's
difference (:func:`paired_differences`: correctness for accuracy, absolute errors for MAE, squared errors
RMSE's delta-method terms (e² + R²) / 2R for RMSE). For McNemar ``sd = sqrt(discordant share)`` (the null
variance of the paired difference), plus the continuity correction 1/n that brings the normal approximation to
the exact test's power (at the n this gives, the exact test finds the MDE with 80-82 % power; without it, 78 %),
and never below the fewest discordant pairs the exact test can ever call significant (6 at α = 0.05) over n.
:func:`required_n` inverts it.

**min_improvement** is read the A/B-testing way: it is the smallest improvement worth a change, and it sizes
the evaluation set; it is not a bar the estimate or its confidence bound must clear. A policy with
``min_improvement`` > 0 states the spread its test will see (``planning_discordance`` for McNemar,
``planning_sd`` for the bootstrap, measured on the real models: see ``configs/promotion.yaml``), so
:attr:`PromotionPolicy.required_n` is the n at which a true improvement of ``min_improvement`` is found with
80 % power. On fewer examples the decision is *inconclusive* ("n=… detects only ≥ …"): the champion stays. On
enough, the decision is significance: the CI excludes 0 on the improving side (and, for accuracy, the exact
McNemar test agrees). So a true improvement of exactly ``min_improvement`` is promoted about 80 % of the time,
a larger one more often, and a significant improvement smaller than ``min_improvement`` is promoted too (it is
real; the set was sized for the minimum, not the other way round). Reading the minimum against the confidence
bound instead would promote a true improvement of exactly the minimum well under half the time. The observed
MDE is stated beside the plan, so a plan whose spread was too optimistic shows on the decision.

**Retraining noise.** Two models trained from one recipe on the same data with different seeds (weight init,
data order) are different models: on a fixed evaluation set their metrics differ by more than the evaluation's
own noise explains, because a seed makes a model better or worse across many examples at once. A test of the
pair alone answers "is this model better than that one", and then promotes the luckier of two equal retrains
in up to a fifth of A/A trials (``bench/bench_promotion_real.py``). A policy's ``training_sd`` (the sd of its
metric between retrains of one recipe, measured there) turns the question into "is the candidate's recipe
better": the confidence interval of Δ becomes Δ ± sqrt(h² + (z·√2·training_sd)²) for each side's evaluation
half-width h (the evaluation's own CI is recorded beside it), and the MDE becomes
(z_{1-α/2} + z_{power}) · sqrt(sd²/n + 2·training_sd²). So no evaluation set detects less than
(z_{1-α/2} + z_{power}) · √2 · training_sd, and a ``min_improvement`` at or below that floor is refused.

Every decision is reproducible: the bootstrap is seeded from the policy, and the per-example predictions of
candidate, champion and baseline are logged with the decision (:mod:`retrain.decisions` replays them).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np

from retrain.config import PREDICTION_METRICS, Guardrail, PromotionPolicy  # noqa: F401  (the policy's home is the config)
from retrain.errors import ConfigError
from retrain.settings import get_settings
from retrain.stats import TARGET_POWER, training_floor, z_sum


# per-example metric functions: (actual, predicted) -> value
def _rmse(actual, predicted):
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def _mae(actual, predicted):
    return float(np.mean(np.abs(predicted - actual)))


def _accuracy(actual, predicted):
    return float(np.mean(predicted == actual))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    name: {"rmse": _rmse, "mae": _mae, "accuracy": _accuracy}[name.removeprefix("test_")] for name in PREDICTION_METRICS
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
    sd: float = math.nan  # sd of the per-example paired differences the MDE is computed from (module docstring)
    training_sd: float = 0.0  # the policy's retraining spread, in the CI and the MDE (module docstring)
    retrained: int = 2  # models of the pair whose seed varies: 2 for two retrains, 1 against a naive baseline
    mde: float = math.nan  # minimum detectable improvement at TARGET_POWER, in the metric's units
    against: str = "champion"  # or "baseline" (a first model)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def improvement_bound(self) -> float:
        """The improvement's confidence bound nearest "no change" (positive: the whole CI is on the better side)."""
        return self.ci_low if self.direction == "maximize" else -self.ci_high


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


def paired_differences(actual, cand, champ, metric: str) -> np.ndarray:
    """Per-example differences (candidate - champion) whose mean is exactly ``metric(cand) - metric(champ)``."""
    actual, cand, champ = (np.asarray(a, dtype=float) for a in (actual, cand, champ))
    if metric.endswith("accuracy"):
        return (cand == actual).astype(float) - (champ == actual).astype(float)
    if metric.endswith("mae"):
        return np.abs(cand - actual) - np.abs(champ - actual)
    if metric.endswith("rmse"):
        # RMSE's influence function (the delta method): e_i^2 / 2R + R / 2 has mean R and RMSE's variance
        def linear(pred):
            r = _rmse(actual, pred)
            return ((pred - actual) ** 2 + r * r) / (2 * r) if r > 0 else np.zeros(len(actual))

        return linear(cand) - linear(champ)
    raise ConfigError(f"metric {metric!r} has no per-example differences (known: {sorted(METRICS)})")


@functools.cache
def mcnemar_min_discordant(confidence: float) -> int:
    """The fewest discordant pairs with which the exact two-sided McNemar test can reject (all on one side)."""
    k = 1
    while 2 * 0.5 ** k >= 1 - confidence:
        k += 1
    return k


def minimum_detectable_effect(test: str, n: int, sd: float, *, confidence: float, power: float = TARGET_POWER,
                              training_sd: float = 0.0, retrained: int = 2) -> float:
    """The smallest true improvement found with probability ``power`` on n paired examples (module docstring).

    ``sd``: sd of the per-example paired differences; for McNemar, sqrt of the discordant-pair share.
    ``training_sd``: sd of the metric between retrains of one recipe (``PromotionPolicy.training_sd``), for each
    of the ``retrained`` models of the pair (2; 1 against a naive baseline)."""
    if n < 1:
        return math.inf
    mde = z_sum(confidence, power) * math.sqrt(sd * sd / n + retrained * training_sd * training_sd)
    if test == "mcnemar":  # |b - c| must clear the threshold by one pair more (continuity correction)
        mde = max(mde + 1 / n, mcnemar_min_discordant(confidence) / n)
    return mde


def required_n(policy: PromotionPolicy, *, sd: float | None = None, discordance: float | None = None,
               effect: float | None = None, power: float = TARGET_POWER) -> int:
    """Paired examples needed to detect ``effect`` (default: the policy's ``min_improvement``) with ``power``.

    Give the spread the test will see: ``discordance`` (share of examples on which the two models disagree in
    correctness) for McNemar, ``sd`` of the per-example paired differences otherwise (an assumption, or
    :attr:`Comparison.sd` of an earlier comparison). The inverse of :func:`minimum_detectable_effect`, with the
    policy's ``training_sd``; an effect at or below :func:`training_floor` needs more than any n.
    """
    effect = policy.min_improvement if effect is None else effect
    if effect <= 0:
        raise ValueError("an effect > 0 is needed (the policy's min_improvement is 0: every n detects only "
                         "effects of some size; pass effect=)")
    if policy.test == "mcnemar":
        if discordance is None or not 0 <= discordance <= 1:
            raise ValueError(f"McNemar needs the discordant-pair share in [0, 1], got {discordance!r}")
        sd = math.sqrt(discordance)
    elif sd is None or sd < 0:
        raise ValueError(f"the paired bootstrap needs the sd of the per-example differences, got {sd!r}")
    if effect <= training_floor(policy.training_sd, policy.confidence, power):
        raise ValueError(f"no n detects {effect:g} with {power:.0%} power: retrains alone differ with sd "
                         f"√2·{policy.training_sd:g}")

    def detects(n: int) -> bool:
        return minimum_detectable_effect(policy.test, n, sd, confidence=policy.confidence, power=power,
                                         training_sd=policy.training_sd) <= effect

    # the MDE falls as n grows: double until it is enough, then bisect to the first n that is
    high = 1
    while not detects(high):
        high *= 2
    low = high // 2  # does not detect (or 0)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if detects(mid) else (mid, high)
    return high


def compare(actual, candidate_pred, champion_pred, policy: PromotionPolicy,
            guardrail_values: Mapping[str, tuple[float, float]] | None = None, *, retrained: int = 2) -> Comparison:
    """Score both models on the same examples. ``guardrail_values``: metric -> (candidate, champion) for guardrails
    that cannot be recomputed from predictions; the rest are recomputed here. ``retrained``: how many of the two
    are retrains whose seed moves them (the policy's ``training_sd`` each): 2, or 1 against a naive baseline."""
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
    if policy.test == "mcnemar":
        sd = math.sqrt((extra["candidate_only_right"] + extra["champion_only_right"]) / len(actual)) if len(actual) else 0.0
    else:
        diffs = paired_differences(actual, cand, champ, policy.primary_metric)
        sd = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0
    if policy.training_sd:  # the CI the decision reads is the recipe's; the evaluation's own is kept beside it
        extra = {**extra, "evaluation_ci": [float(low), float(high)]}
        low, high = _with_training_noise(delta, low, high, policy, retrained)
    mde = minimum_detectable_effect(policy.test, len(actual), sd, confidence=policy.confidence,
                                    training_sd=policy.training_sd, retrained=retrained)
    return Comparison(metric=policy.primary_metric, direction=policy.direction, n=len(actual), candidate=cand_value,
                      champion=champ_value, delta=delta, ci_low=low, ci_high=high, p_value=p, test=policy.test,
                      improvement=delta * _better_sign(policy.direction), guardrails=guards, extra=extra,
                      sd=sd, training_sd=policy.training_sd, retrained=retrained, mde=mde)


def _with_training_noise(delta: float, low: float, high: float, policy: PromotionPolicy,
                         retrained: int) -> tuple[float, float]:
    """The evaluation's CI of Δ widened by the retraining spread: each side's half-width h becomes
    sqrt(h² + z²·r·training_sd²), z the confidence's two-sided normal quantile, r the retrained models of the
    pair (2: two retrains, √2·training_sd apart; 1: one retrain against a fixed baseline; module docstring)."""
    z = NormalDist().inv_cdf(1 - (1 - policy.confidence) / 2)
    extra = z * z * retrained * policy.training_sd ** 2
    return delta - math.sqrt((delta - low) ** 2 + extra), delta + math.sqrt((high - delta) ** 2 + extra)


def compare_with_baseline(actual, candidate_pred, baseline_pred, policy: PromotionPolicy) -> Comparison:
    """A first model against its naive baseline on the same examples (those the baseline has a prediction for:
    a seasonal-naive forecast is missing where the season before lies outside the data). No guardrails."""
    actual, cand, base = (np.asarray(a) for a in (actual, candidate_pred, baseline_pred))
    if not (len(actual) == len(cand) == len(base)):
        raise ValueError(f"paired comparison needs equal lengths (actual {len(actual)}, candidate {len(cand)}, "
                         f"baseline {len(base)})")
    keep = ~np.isnan(base.astype(float)) if base.dtype.kind == "f" else np.ones(len(base), dtype=bool)
    bare = policy.model_copy(update={"guardrails": []})
    comparison = compare(actual[keep], cand[keep], base[keep], bare, retrained=1)
    return Comparison(**{**comparison.as_dict(), "against": "baseline"})


@dataclass(frozen=True)
class Decision:
    promote: bool
    outcome: str  # promoted | rejected | first_model | awaiting_approval
    reasons: list[str]
    comparison: Comparison | None = None  # candidate vs champion, or vs the naive baseline for a first model
    power: dict | None = None  # {"n", "mde", "powered", "required_n", "planned_mde", "statement", …}: see power_of

    def as_dict(self) -> dict:
        return {"promote": self.promote, "outcome": self.outcome, "reasons": self.reasons,
                "comparison": self.comparison.as_dict() if self.comparison else None, "power": self.power}


def power_of(comparison: Comparison, policy: PromotionPolicy) -> dict:
    """What n the comparison had, what it could detect, and whether that is enough for the policy's minimum.

    ``powered``: n >= the policy's ``required_n`` (its minimum detected with 80 % power at the planning spread);
    None when the policy sets no minimum (or for a first model, judged against its baseline without one): then
    the statement is informational. ``mde`` is what this n detects at the spread observed on these examples."""
    c, minimum = comparison, policy.min_improvement
    spread = (f"{c.sd ** 2:.1%} discordant pairs" if c.test == "mcnemar" else f"per-example sd {c.sd:.4g}")
    detects = (f"n={c.n} detects an improvement ≥ {c.mde:.4g} in {c.metric} with {TARGET_POWER:.0%} power "
               f"({c.test}, {spread})")
    needed = planned = None
    if c.against == "baseline" or minimum <= 0:
        powered, verdict = None, ("no minimum improvement applies to a first model" if c.against == "baseline"
                                  else "the policy sets no minimum improvement")
    else:
        needed, planned = policy.required_n, policy.planned_mde(c.n)
        powered = c.n >= needed
        verdict = (f"enough for the policy minimum {minimum:.4g} (needs n ≥ {needed} at {policy.planning()})"
                   if powered else f"the policy minimum {minimum:.4g} needs n ≥ {needed} at {policy.planning()}")
        if c.sd > policy.planning_spread * (1 + 1e-9):
            verdict += (f"; the observed spread exceeds the plan, so this n finds the minimum with less than "
                        f"{TARGET_POWER:.0%} power")
    return {"n": c.n, "mde": c.mde, "power": TARGET_POWER, "min_improvement": minimum, "powered": powered,
            "required_n": needed, "planned_mde": planned, "against": c.against,
            "statement": f"power: {detects}; {verdict}"}


def _summary(c: Comparison, level: int, other: str) -> str:
    return (f"{c.metric}: candidate {c.candidate:.4g} vs {other} {c.champion:.4g} "
            f"(Δ {c.delta:+.4g}, {level}% CI [{c.ci_low:+.4g}, {c.ci_high:+.4g}], p={c.p_value:.3g}, n={c.n})")


def _significant(c: Comparison, policy: PromotionPolicy) -> bool:
    """The whole CI lies on the improving side (and, for McNemar, the exact test agrees)."""
    significant = c.improvement_bound > 0
    if policy.test == "mcnemar":
        significant = significant and c.p_value < 1 - policy.confidence
    return significant


def decide(policy: PromotionPolicy, *, quality_verdict: str, n_examples: int, comparison: Comparison | None,
           champion_exists: bool, baseline_comparison: Comparison | None = None) -> Decision:
    """The decision table. Reasons are written for a reviewer reading the model version in the MLflow UI.

    With a champion, ``comparison`` (candidate vs champion) decides; without one, ``baseline_comparison``
    (candidate vs its naive baseline, :func:`compare_with_baseline`) does, when the policy names a baseline."""
    if quality_verdict != "passed":
        return Decision(False, "rejected", [f"quality gate verdict is {quality_verdict!r}; only data that passed is promoted"])
    if n_examples < policy.min_eval_examples:
        return Decision(False, "rejected", [f"evaluation has {n_examples} examples; the policy needs at least {policy.min_eval_examples}"])
    level = round(policy.confidence * 100)
    if not champion_exists:
        if not policy.baseline_metric:
            return Decision(True, "first_model", ["first model of this name, gate passed (the policy names no baseline)"])
        b = baseline_comparison
        if b is None:
            return Decision(False, "rejected", [f"first model: no per-example predictions of the naive baseline "
                                                f"({policy.baseline_metric}) to test it against"])
        power = power_of(b, policy)
        if b.n < policy.min_eval_examples:
            return Decision(False, "rejected", [f"first model: the naive baseline predicts only {b.n} of {n_examples} "
                                                f"examples; the policy needs at least {policy.min_eval_examples}"],
                            b, power)
        vs = f"(Δ {b.delta:+.4g}, {level}% CI [{b.ci_low:+.4g}, {b.ci_high:+.4g}], p={b.p_value:.3g}, n={b.n})"
        if b.improvement <= 0 or not _significant(b, policy):
            return Decision(False, "rejected", [f"first model: {b.metric} {b.candidate:.4g} is not significantly "
                                                f"better than the naive baseline {b.champion:.4g} {vs}",
                                                power["statement"]], b, power)
        return Decision(True, "first_model", [f"first model: {b.metric} {b.candidate:.4g} significantly beats the "
                                              f"naive baseline {b.champion:.4g} {vs}", power["statement"]], b, power)
    assert comparison is not None
    c = comparison
    power = power_of(c, policy)
    broken = [f"guardrail {m}: worse by {g['worse_by']:.4g} > tolerance {g['tolerance']:.4g}"
              for m, g in c.guardrails.items()
              if g["worse_by"] > g["tolerance"] and not math.isclose(g["worse_by"], g["tolerance"], rel_tol=1e-9, abs_tol=1e-12)]
    significant = _significant(c, policy)
    reasons = [_summary(c, level, "champion")]
    if power["powered"] is False:
        reasons.append(f"inconclusive: n={c.n} detects only ≥ {power['planned_mde']:.4g} with {TARGET_POWER:.0%} "
                       f"power ({policy.planning()}), more than the policy minimum {policy.min_improvement:.4g} "
                       f"(needs n ≥ {power['required_n']}); the champion stays")
    else:
        reasons.append(power["statement"])
        if c.improvement <= 0:
            reasons.append("candidate is not better than the champion")
        elif not significant:
            reasons.append(f"improvement is within noise at {level}% confidence")
    reasons += broken
    # min_improvement sized the set (power); the decision itself is significance (module docstring)
    promote = power["powered"] is not False and c.improvement > 0 and significant and not broken
    return Decision(promote, "promoted" if promote else "rejected", reasons, c, power)


def judge_outcomes(policy: PromotionPolicy, actual, candidate, *, champion=None, baseline=None,
                   quality_verdict: str) -> Decision:
    """The whole decision from per-example predictions: what the promotion step decides and what
    ``retrain decision`` recomputes from the logged outcomes (the same function, so they agree)."""
    comparison = compare(actual, candidate, champion, policy) if champion is not None else None
    covered = 0 if baseline is None else int(np.sum(~np.isnan(np.asarray(baseline, dtype=float))))
    # a baseline with (almost) no predictions is no baseline: decide() says so instead of a test on nothing
    baseline_comparison = (compare_with_baseline(actual, candidate, baseline, policy)
                           if champion is None and covered >= 2 else None)
    return decide(policy, quality_verdict=quality_verdict, n_examples=len(actual), comparison=comparison,
                  champion_exists=champion is not None, baseline_comparison=baseline_comparison)


def record_tags(decision: Mapping) -> dict[str, str]:
    """The statistics of a decision (``Decision.as_dict()``) as registry tags, formatted once: the promotion step
    writes them (``decision.*`` on the version, ``promotion.*`` on the run) and ``retrain decision`` compares."""
    c, power = decision.get("comparison"), decision.get("power") or {}
    tags = {"judged": decision["outcome"]}
    if c:
        tags |= {"against": c.get("against", "champion"), "n": str(c["n"]), "metric": c["metric"],
                 "delta": f"{c['delta']:+.6g}", "ci": f"[{c['ci_low']:+.6g}, {c['ci_high']:+.6g}]",
                 "p_value": f"{c['p_value']:.6g}", "mde": f"{c['mde']:.6g}"}
    if power:
        tags["powered"] = {True: "true", False: "false", None: "n/a"}[power.get("powered")]
        if power.get("required_n") is not None:
            tags["required_n"] = str(power["required_n"])
    return tags


@functools.cache
def load_policies() -> dict[str, PromotionPolicy]:
    """Policies per registered model from ``configs/promotion.yaml`` (typed and validated by
    :class:`retrain.config.PromotionConfig`); a minimum whose required n the model's held-out set can never hold
    is refused too."""
    from retrain import config

    policies = dict(config.load("promotion").models)
    path = get_settings().config_dir / "promotion.yaml"
    for model, policy in policies.items():
        _check_primary_metric(path, model, policy)
        _check_evaluation_size(path, model, policy)
    return policies


def _check_primary_metric(path, model: str, policy: PromotionPolicy) -> None:
    """A policy judges the metric its model's candidate events carry as primary (the catalog's), none other."""
    from retrain import catalog

    entry = catalog.MODELS.get(model)
    if entry is not None and entry.primary_metric != policy.primary_metric:
        raise ConfigError(f"{path}: models.{model}: primary_metric {policy.primary_metric!r} must be the model's "
                          f"primary metric in the catalog ({entry.primary_metric!r})")


def _check_evaluation_size(path, model: str, policy: PromotionPolicy) -> None:
    """A policy whose required n exceeds the most examples the model's held-out set can hold is refused."""
    from retrain import assets, config

    needed, dataset = policy.required_n, assets.MODELS.get(model)
    if needed is None or dataset is None:
        return
    workload = assets.DATA_ASSETS[dataset].workload
    capacity = config.dataset_settings(workload, dataset).evaluation_capacity()
    if capacity is not None and capacity[0] < needed:
        raise ConfigError(f"{path}: models.{model}: min_improvement {policy.min_improvement:g} needs n ≥ {needed} "
                          f"evaluation examples for {TARGET_POWER:.0%} power ({policy.planning()}), but its held-out "
                          f"set holds at most {capacity[0]}: {capacity[1]} (configs/{workload}.yaml)")


def policy_for(model: str) -> PromotionPolicy:
    policies = load_policies()
    if model not in policies:
        raise ConfigError(f"configs/promotion.yaml: no policy for model {model!r} (known: {sorted(policies)})")
    return policies[model]


def is_finite(value: float) -> bool:
    return value is not None and math.isfinite(value)
