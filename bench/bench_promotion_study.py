"""Promotion policy study: how often an equal candidate is promoted (A/A), how often a better one is (A/B).

Everything goes through the library's own decision path: ``retrain.promotion.compare`` on paired held-out
predictions, then ``retrain.promotion.decide(champion_exists=True, quality_verdict="passed")``, with the
policies of the repo's ``configs/promotion.yaml`` (``promotion.policy_for``): ``household_power_lgbm``
(test_rmse, minimize, paired bootstrap, test_mae guardrail) and ``mnist_cnn`` / ``ticks_direction_lgbm``
(test_accuracy, maximize, McNemar + bootstrap CI). Nothing is asserted; numbers are printed.

How it is measured
------------------
1. **A/A, regression** (``household_power_lgbm``). Sample files from ``retrain.data.power.generate_power``
   (90 days, the demo's default size), parsed with ``read_power_bytes``, turned into hourly features with
   ``retrain.training.tabular.hourly`` / ``build_features`` / ``time_split`` under the repo's
   ``tabular_ml_training`` config (its ``split.test_days`` × 24 hourly examples). Per trial two LightGBM regressors are
   trained exactly as ``tabular.train`` does (``tabular.lightgbm_params``, early stopping on the validation
   window), identical except for the LightGBM ``seed`` (bagging_fraction / feature_fraction 0.9 make it
   matter), ``num_threads=1``. One is "champion", the other "candidate". ``--datasets`` sample files (seeds
   0, 1, ...) × ``--pairs`` seed pairs each = the trials (default 10 × 4 = 40).
2. **A/A, classifiers** (McNemar policies). (a) ``mnist_cnn`` policy: a 10-class synthetic problem
   (``sklearn.datasets.make_classification``, a fresh dataset every ``--pairs`` trials; accuracy ~96%),
   1000 held-out examples (a demo-sized MNIST test set); both models are ``LogisticRegression`` fits on *different
   bootstrap resamples* of the same training set (lbfgs is deterministic, so the resample is the seed).
   (b) ``ticks_direction_lgbm`` policy: a noisy binary "direction" problem (accuracy ~60%), 2000 held-out
   examples, two ``lightgbm.LGBMClassifier`` fits that differ only in ``random_state`` (bagging 0.8 and
   feature_fraction 0.8).
   Reported: false-promotion rate = promoted / trials, with a Wilson 95% interval (40 trials only bound
   the rate loosely), the champion's mean primary metric (RMSE in kW or accuracy), the mean |Δ| between the
   two models, for the classifiers the mean discordant pairs, and the share of trials whose CI excludes 0
   in either direction (two-sided significance, which a fair test keeps near 5% under A/A).
3. **A/B, classifier, simulated** (``mnist_cnn`` policy). Per trial, n test examples get a latent difficulty
   ``z ~ N(0, 1)``; model m is right on an example iff ``z + s·e_m < t_m`` with independent ``e_m ~ N(0, 1)``
   and ``s = 0.5``, so the two models' errors are strongly correlated, as real models' are (they fail on the
   same hard examples). ``t_m`` is set so the *true* accuracies are exactly p0 (champion) and p0 + 0.01
   (candidate). Wrong predictions are a random wrong class. 40 trials per n in 500 … 10000, for p0 = 0.98
   (MNIST-like: the repo's synthetic MNIST trains to ~99%) and p0 = 0.90. Reported: power = promotion rate,
   and the smallest n with power ≥ 80%. The same simulation with both accuracies = p0 gives a simulated
   A/A check of the McNemar policy itself (no seed effects), printed for comparison.

Targets: A/A false-promotion rate ≤ 5% per policy; power ≥ 80% for a +1 accuracy point improvement (and at
which evaluation size). The demo's MNIST evaluation sizes are read from ``retrain.demo.MNIST`` when this runs:
one drop's test split (600 images, the first model's comparison with its baseline) and two drops' (1200, the
retrain's comparison with the champion); both are added to the grid (the real MNIST test set has 10,000).

This study's A/A classifiers are stand-ins (scikit-learn models on synthetic data); ``bench_promotion_real.py``
retrains the real pipelines (the MNIST CNN, the power LightGBM, the tick model) and uses this simulation, with
its noise calibrated to the real models, as its second table.

BLAS/OpenMP pools are limited to one thread (``OMP_NUM_THREADS`` etc. set before numpy loads, unless already
set): with other work on the 2-core box a 2-thread lbfgs fit took 6-27 s instead of ~0.2 s.

Run from the repo root: ``.venv/bin/python bench/bench_promotion_study.py [--trials 40]`` (about 2 min on
2 cores). Works in a temp ``RETRAIN_HOME``; writes nothing to the checkout.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings

# one BLAS/OpenMP thread, set before numpy/scipy/sklearn load their pools: on the 2 shared cores, with other
# work running, a 2-thread lbfgs fit took ~27 s instead of ~0.2 s (threadpoolctl after import missed scipy's pools)
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402

SIM_NOISE = 0.5  # s: per-model noise on top of the shared latent difficulty
AB_SIZES = [500, 1000, 2000, 3000, 5000, 7000, 10000]
AB_BASES = [0.98, 0.90]
TARGET_FALSE_RATE = 0.05
TARGET_POWER = 0.80


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def judge(promotion, policy, actual, candidate, champion):
    comparison = promotion.compare(actual, candidate, champion, policy)
    decision = promotion.decide(policy, quality_verdict="passed", n_examples=len(actual), comparison=comparison,
                                champion_exists=True)
    return comparison, decision


class Tally:
    def __init__(self, name: str, policy_name: str, n_eval: str):
        self.name, self.policy_name, self.n_eval = name, policy_name, n_eval
        self.promoted = 0
        self.trials = 0
        self.abs_delta: list[float] = []
        self.discordant: list[int] = []
        self.significant_either_way = 0
        self.guardrail_blocked = 0
        self.ac1: list[float] = []
        self.champion_metric: list[float] = []

    def add(self, comparison, decision) -> None:
        self.trials += 1
        self.promoted += decision.promote
        self.abs_delta.append(abs(comparison.delta))
        self.champion_metric.append(comparison.champion)
        if comparison.extra:
            self.discordant.append(comparison.extra["candidate_only_right"] + comparison.extra["champion_only_right"])
        if comparison.ci_low > 0 or comparison.ci_high < 0:
            self.significant_either_way += 1
        if any(r.startswith("guardrail") for r in decision.reasons) and comparison.improvement > 0:
            self.guardrail_blocked += 1

    def row(self) -> str:
        rate = self.promoted / self.trials
        low, high = wilson(self.promoted, self.trials)
        disc = f"{np.mean(self.discordant):7.1f}" if self.discordant else "      -"
        verdict = "meets" if rate <= TARGET_FALSE_RATE else "MISSES"
        return (f"{self.name:<35} {self.policy_name:<21} {self.n_eval:>6} {np.mean(self.champion_metric):7.4f} "
                f"{self.promoted:>3}/{self.trials:<3} "
                f"{rate:6.1%} [{low:5.1%}, {high:5.1%}] {np.mean(self.abs_delta):9.4f} {disc} "
                f"{self.significant_either_way / self.trials:9.1%}  {verdict}")


# ---------------------------------------------------------------------------------------------------------
# A/A: household power, LightGBM regressors differing only in seed


def power_split(seed: int, cfg):
    from retrain.data import power
    from retrain.training import tabular

    data = power.generate_power(90 * 1440, seed=seed)
    table = power.read_power_bytes(data, f"sample-{seed}.txt")
    hours = tabular.hourly(table, cfg.features.target, cfg.features.max_missing_fraction_per_hour)
    features = tabular.build_features(hours, cfg)
    return tabular.time_split(features, cfg, dataset="household_power", version=f"bench-{seed}")


def train_regressor(split, cfg, seed: int) -> np.ndarray:
    """What ``tabular.train`` + ``tabular.evaluate`` do, in memory: test-window predictions."""
    import lightgbm as lgb

    from retrain.training import tabular

    cfg = cfg.model_copy(update={"lightgbm": cfg.lightgbm.model_copy(update={"seed": seed, "num_threads": 1})})
    columns = tabular.feature_columns(split.train)
    train_set = lgb.Dataset(split.train[columns], label=split.train["target"], free_raw_data=True)
    valid_set = lgb.Dataset(split.valid[columns], label=split.valid["target"], reference=train_set)
    booster = lgb.train(tabular.lightgbm_params(cfg), train_set, num_boost_round=cfg.lightgbm.n_estimators,
                        valid_sets=[train_set, valid_set], valid_names=["train", "valid"],
                        callbacks=[lgb.early_stopping(cfg.lightgbm.early_stopping_rounds, verbose=False)])
    return booster.predict(split.test[columns], num_iteration=booster.best_iteration)


def aa_regression(promotion, datasets: int, pairs: int) -> Tally:
    from retrain import config

    cfg = config.load("tabular_ml_training").datasets["household_power"]
    policy = promotion.policy_for(cfg.model)
    tally = Tally("A/A LightGBM regressor, seeds", cfg.model, "")
    for d in range(datasets):
        split = power_split(d, cfg)
        actual = split.test["target"].to_numpy()
        tally.n_eval = str(len(actual))
        for p in range(pairs):
            champion = train_regressor(split, cfg, seed=1000 * d + 2 * p + 1)
            candidate = train_regressor(split, cfg, seed=1000 * d + 2 * p + 2)
            comparison, decision = judge(promotion, policy, actual, candidate, champion)
            tally.add(comparison, decision)
            # lag-1 autocorrelation of the per-hour squared-error difference: the bootstrap resamples hours as iid
            diff = (candidate - actual) ** 2 - (champion - actual) ** 2
            if diff.std() > 0:
                tally.ac1.append(float(np.corrcoef(diff[:-1], diff[1:])[0, 1]))
    return tally


# ---------------------------------------------------------------------------------------------------------
# A/A: classifiers


def aa_multiclass_logreg(promotion, trials: int, pairs: int, n_test: int = 1000, n_train: int = 3000) -> Tally:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    policy = promotion.policy_for("mnist_cnn")
    tally = Tally("A/A LogReg 10-class, bootstrap fits", "mnist_cnn", str(n_test))
    x = y = None
    for t in range(trials):
        if t % pairs == 0:
            x, y = make_classification(n_samples=n_train + n_test, n_features=40, n_informative=20, n_redundant=5,
                                       n_classes=10, n_clusters_per_class=1, class_sep=2.5, flip_y=0.02,
                                       random_state=t)
        x_train, y_train, x_test, y_test = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
        preds = []
        for k in (1, 2):
            rng = np.random.default_rng(10_000 * t + k)
            idx = rng.integers(0, n_train, n_train)
            model = LogisticRegression(max_iter=2000).fit(x_train[idx], y_train[idx])
            preds.append(model.predict(x_test))
        tally.add(*judge(promotion, policy, y_test, preds[1], preds[0]))
    return tally


def aa_binary_lgbm(promotion, trials: int, pairs: int, n_test: int = 2000, n_train: int = 6000) -> Tally:
    import lightgbm as lgb
    from sklearn.datasets import make_classification

    policy = promotion.policy_for("ticks_direction_lgbm")
    tally = Tally("A/A LightGBM binary, seeds", "ticks_direction_lgbm", str(n_test))
    x = y = None
    for t in range(trials):
        if t % pairs == 0:
            x, y = make_classification(n_samples=n_train + n_test, n_features=20, n_informative=6, n_redundant=2,
                                       n_classes=2, flip_y=0.6, class_sep=0.8, random_state=500 + t)
        x_train, y_train, x_test, y_test = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
        preds = []
        for k in (1, 2):
            model = lgb.LGBMClassifier(n_estimators=150, learning_rate=0.05, num_leaves=15, subsample=0.8,
                                       subsample_freq=1, colsample_bytree=0.8, random_state=10_000 * t + k,
                                       n_jobs=1, verbose=-1)
            model.fit(x_train, y_train)
            preds.append(model.predict(x_test))
        tally.add(*judge(promotion, policy, y_test, preds[1], preds[0]))
    return tally


# ---------------------------------------------------------------------------------------------------------
# A/B (and simulated A/A): correlated correctness with known true accuracies


def simulate_pair(rng, n: int, p_champion: float, p_candidate: float, s: float = SIM_NOISE):
    from scipy.stats import norm

    scale = math.sqrt(1 + s * s)
    z = rng.standard_normal(n)
    champion_right = z + s * rng.standard_normal(n) < scale * norm.ppf(p_champion)
    candidate_right = z + s * rng.standard_normal(n) < scale * norm.ppf(p_candidate)
    actual = rng.integers(0, 10, n)
    def predictions(right):
        return np.where(right, actual, (actual + rng.integers(1, 10, n)) % 10)
    return actual, predictions(candidate_right), predictions(champion_right)


def analytic_n80(base: float, gain: float, s: float = SIM_NOISE, draws: int = 2_000_000) -> tuple[float, float, int]:
    """Discordance rate, share of discordant pairs won by the candidate, and the n at which a one-sided 2.5%
    McNemar (normal approximation) reaches 80% power, for the simulation's model."""
    from scipy.stats import norm

    rng = np.random.default_rng(1)
    scale = math.sqrt(1 + s * s)
    z = rng.standard_normal(draws)
    champion_right = z + s * rng.standard_normal(draws) < scale * norm.ppf(base)
    candidate_right = z + s * rng.standard_normal(draws) < scale * norm.ppf(base + gain)
    only_candidate = float(np.mean(candidate_right & ~champion_right))
    only_champion = float(np.mean(~candidate_right & champion_right))
    discordance = only_candidate + only_champion
    q = only_candidate / discordance
    discordant_needed = ((norm.ppf(0.975) + norm.ppf(TARGET_POWER)) * 0.5 / (q - 0.5)) ** 2
    return discordance, q, int(math.ceil(discordant_needed / discordance))


def ab_study(promotion, trials: int, gain: float, bases=AB_BASES, sizes=AB_SIZES):
    policy = promotion.policy_for("mnist_cnn")
    rows = []
    for base in bases:
        for n in sizes:
            rng = np.random.default_rng(int(base * 1000) * 100_000 + n + int(gain * 1e4))
            promoted, discordant, deltas, mdes = 0, [], [], []
            for _ in range(trials):
                comparison, decision = judge(promotion, policy, *simulate_pair(rng, n, base, base + gain))
                promoted += decision.promote
                discordant.append(comparison.extra["candidate_only_right"] + comparison.extra["champion_only_right"])
                deltas.append(comparison.delta)
                mdes.append(comparison.mde)
            rows.append({"base": base, "n": n, "promoted": promoted, "trials": trials,
                         "discordant": float(np.mean(discordant)), "delta": float(np.mean(deltas)),
                         "mde": float(np.mean(mdes))})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--pairs", type=int, default=4, help="A/A trials per sample dataset")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="bench-promotion-")
    os.environ["RETRAIN_HOME"] = home
    os.environ.pop("RETRAIN_CONFIG_DIR", None)
    warnings.filterwarnings("ignore")

    from retrain import promotion, settings

    settings.reset_settings()
    from retrain.demo import MNIST as DEMO_MNIST

    demo_sizes = (DEMO_MNIST["n_test"], 2 * DEMO_MNIST["n_test"])  # one drop's test split, then two drops'
    sizes = sorted(set(AB_SIZES) | set(demo_sizes))
    started = time.perf_counter()
    print(f"promotion policy study (python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    for name in ("household_power_lgbm", "mnist_cnn", "ticks_direction_lgbm"):
        p = promotion.policy_for(name)
        guards = ", ".join(f"{g.metric} tol {g.tolerance}" for g in p.guardrails) or "none"
        print(f"  policy {name}: {p.primary_metric} ({p.direction}), test {p.test}, confidence {p.confidence}, "
              f"bootstrap {p.bootstrap_samples}, min_improvement {p.min_improvement}, guardrails: {guards}")

    # --- A/A ---
    timings = {}
    t = time.perf_counter()
    datasets = max(1, math.ceil(args.trials / args.pairs))
    regression = aa_regression(promotion, datasets, args.pairs)
    timings["A/A regression"] = time.perf_counter() - t
    t = time.perf_counter()
    logreg = aa_multiclass_logreg(promotion, args.trials, args.pairs)
    timings["A/A logreg"] = time.perf_counter() - t
    t = time.perf_counter()
    binary = aa_binary_lgbm(promotion, args.trials, args.pairs)
    timings["A/A lgbm binary"] = time.perf_counter() - t
    t = time.perf_counter()
    sim_aa = ab_study(promotion, args.trials, 0.0, bases=[0.98, 0.90], sizes=[1000, 5000])
    timings["A/A simulated"] = time.perf_counter() - t

    print()
    print("A/A: champion and candidate from the same recipe (promoted = false promotion); target <= 5%")
    header = (f"{'study':<35} {'policy':<21} {'n_eval':>6} {'metric':>7} {'promoted':>7} {'rate':>6} {'Wilson 95%':>16} "
              f"{'mean |Δ|':>9} {'discord':>7} {'CI excl 0':>9}  target")
    print(header)
    print("-" * len(header))
    for tally in (regression, logreg, binary):
        print(tally.row())
    for row in sim_aa:
        rate = row["promoted"] / row["trials"]
        low, high = wilson(row["promoted"], row["trials"])
        name = f"A/A simulated, acc {row['base']:.2f} both"
        print(f"{name:<35} {'mnist_cnn':<21} {row['n']:>6} {row['base']:7.4f} {row['promoted']:>3}/{row['trials']:<3} {rate:6.1%} "
              f"[{low:5.1%}, {high:5.1%}] {abs(row['delta']):9.4f} {row['discordant']:7.1f} {'':>9}  "
              f"{'meets' if rate <= TARGET_FALSE_RATE else 'MISSES'}")
    print("-" * len(header))
    print(f"  regression: {datasets} sample files x {args.pairs} seed pairs; test window {regression.n_eval} hourly "
          f"examples; lag-1 autocorrelation of the per-hour loss difference: mean {np.mean(regression.ac1):+.2f} "
          f"(the bootstrap treats hours as independent); guardrail blocked {regression.guardrail_blocked} "
          f"candidates that were better on RMSE")
    print("  'CI excl 0': share of trials whose 95% CI of the difference excludes 0 in either direction "
          "(two-sided significance; a fair test gives ~5% under A/A)")

    # --- A/B ---
    t = time.perf_counter()
    ab = ab_study(promotion, args.trials, 0.01, sizes=sizes)
    timings["A/B simulated"] = time.perf_counter() - t
    print()
    print(f"A/B: candidate truly +1 accuracy point, mnist_cnn policy (McNemar + bootstrap CI, 95%), {args.trials} trials "
          f"per cell; correlated errors (shared latent difficulty, s={SIM_NOISE}); target power >= 80%")
    header = (f"{'champion acc':>12} {'candidate acc':>13} {'n_eval':>7} {'promoted':>9} {'power':>7} {'Wilson 95%':>16} "
              f"{'discord':>8} {'mean Δ':>8} {'stated MDE':>10}")
    print(header)
    print("-" * len(header))
    smallest = {}
    for row in ab:
        rate = row["promoted"] / row["trials"]
        low, high = wilson(row["promoted"], row["trials"])
        mark = " <- demo size" if row["n"] in demo_sizes else ""
        print(f"{row['base']:12.2f} {row['base'] + 0.01:13.2f} {row['n']:7d} {row['promoted']:>4}/{row['trials']:<4} "
              f"{rate:7.1%} [{low:5.1%}, {high:5.1%}] {row['discordant']:8.1f} {row['delta']:+8.4f} {row['mde']:10.4f}{mark}")
        if rate >= TARGET_POWER and row["base"] not in smallest:
            smallest[row["base"]] = row["n"]
    print("-" * len(header))
    print("  'stated MDE': the mean minimum detectable effect (80% power) each decision states at that n "
          "(retrain.promotion.minimum_detectable_effect); a +0.01 gain is reliably found where it is <= 0.01")

    # --- summary ---
    print()
    print("targets")
    for tally in (regression, logreg, binary):
        rate = tally.promoted / tally.trials
        print(f"  A/A false promotion <= 5%: {tally.name} ({tally.policy_name}): {rate:.1%} "
              f"-> {'MEETS TARGET' if rate <= TARGET_FALSE_RATE else 'MISSES TARGET'}")
    for base in AB_BASES:
        demo = [r for r in ab if r["base"] == base and r["n"] in demo_sizes]
        demo_text = ", ".join(f"n={r['n']}: {r['promoted'] / r['trials']:.0%}" for r in demo)
        n80 = smallest.get(base)
        reached = f"smallest n with power >= 80%: {n80}" if n80 else f"not reached up to n={max(sizes)}"
        holding = [r["n"] for r in demo if r["promoted"] / r["trials"] >= TARGET_POWER]
        verdict = ("holds at both" if len(holding) == len(demo) else f"holds at n={holding[0]} only" if holding
                   else "does NOT hold")
        discordance, q, n80 = analytic_n80(base, 0.01)
        print(f"  power >= 80% for +1 point at accuracy {base:.2f} -> {base + 0.01:.2f}: {reached} (grid, "
              f"{args.trials} trials); normal-approximation McNemar: n ~ {n80} (discordance {discordance:.2%}, "
              f"candidate wins {q:.0%} of discordant pairs); demo MNIST sizes {demo_text} -> {verdict}")
    print()
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
          + f"; total {time.perf_counter() - started:.1f} (load average {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
