"""The planning spreads of ``configs/promotion.yaml``, measured on the real pipelines.

A policy with ``min_improvement`` > 0 states the spread its test will see (``planning_discordance`` for
McNemar, ``planning_sd`` of the per-example paired differences for the bootstrap); with it the policy derives
the evaluation size that finds ``min_improvement`` with 80 % power. This script measures that spread for the
pair of models a promotion actually compares in the demo: the champion before the demo's retrain and the
candidate after it, both trained by the library's own training functions with the default configs on the
demo's sample data (:mod:`retrain.samples` generators), scored on the candidate's held-out set:

* mnist / cifar10: CNN on the first drop's training images (3000 / 1800) vs on two drops (6000 / 3600),
  3000 generated test images;
* power: LightGBM on 45 days vs 66 days of one household (the demo's two files), the 66-day window's test tail;
* ticks: the window ending on day K vs the window ending on day K+1 (40k ticks a day), day K+1's bars.

It prints one JSON line per (dataset, seed) and a summary per dataset. Not part of the test suite.

    .venv/bin/python bench/bench_planning_spreads.py [--only mnist,cifar10,power,ticks] [--seeds 1,2,3]

Takes ~1 min per MNIST seed, ~5 min per CIFAR-10 seed, seconds per power or tick seed on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np


def images(dataset: str, seed: int, n_test: int = 3000) -> dict:
    import torch

    from retrain import config
    from retrain.data import cifar10, mnist
    from retrain.training import loop
    from retrain.workloads import images as workload

    ds = config.dataset_settings("image_dl_training", dataset)
    cfg = ds.loop.model_copy(update={"device": "cpu"})
    if dataset == "mnist":
        first, second = (mnist.generate_images(3000, seed=seed, split="train", offset=o) for o in (0, 3000))
        test = mnist.generate_images(n_test, seed=seed, split="test")
    else:  # two data batches of 900 per drop, as retrain.demo.CIFAR10
        def drop(offset):
            parts = [cifar10.generate_images(900, seed=seed, stream=b, offset=offset) for b in (1, 2)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

        first, second = drop(0), drop(900)
        test = cifar10.generate_images(n_test, seed=seed, stream=0)
    x = test[0][:, None] if test[0].ndim == 3 else test[0].transpose(0, 3, 1, 2)
    x = torch.from_numpy(x.astype(np.float32) / 255.0)

    def right(images_, labels):
        rows, val = workload._train_val(len(labels), ds.validation_fraction, cfg.seed)
        torch.manual_seed(cfg.seed)
        model = workload.build_model(dataset)
        loop.fit(model, loop.image_dataset(images_, labels, rows=rows), loop.image_dataset(images_, labels, rows=val),
                 cfg)
        with torch.no_grad():
            return model.eval()(x).argmax(1).numpy() == test[1]

    champion = right(*first)
    candidate = right(np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]]))
    return _mcnemar(dataset, seed, candidate, champion)


def power(seed: int, days: tuple[int, int] = (45, 21)) -> dict:
    home = Path(tempfile.mkdtemp(prefix="spreads-"))
    os.environ["RETRAIN_HOME"] = str(home)
    os.environ.pop("RETRAIN_DATA_ROOT", None)
    from retrain import config, promotion, samples, settings
    from retrain.ingest import landing
    from retrain.ingest import power as ingest
    from retrain.training import tabular

    settings.reset_settings()
    cfg = config.dataset_settings("tabular_ml_training", "household_power")
    start, works = samples.POWER_START, []
    for i, length in enumerate(days):
        path = home / f"power-{seed}-{i}.txt"
        samples.power(str(path), days=length, start=start, seed=seed)
        start += timedelta(days=length)
        landing.land("household_power", str(path))
        work = str(home / f"work-{i}")
        tabular.prepare(ingest.ingest_file(path.name, f"run_{i}").snapshot, cfg, work)
        tabular.train(cfg, work)
        works.append(work)
    import pandas as pd

    test = pd.read_parquet(Path(works[-1]) / "test.parquet")
    columns = tabular.feature_columns(test)
    champion, candidate = (tabular.load_booster(w).predict(test[columns]) for w in works)
    actual = test["target"].to_numpy()
    differences = promotion.paired_differences(actual, candidate, champion, "test_rmse")
    return {"dataset": "power", "seed": seed, "n": len(actual), "improvement": -float(differences.mean()),
            "sd": float(np.std(differences, ddof=1))}


def ticks(seed: int, ticks_per_day: int = 40_000) -> dict:
    import pandas as pd

    from retrain import config
    from retrain.data import tick_generator
    from retrain.training import ticks as training

    cfg = config.dataset_settings("time_series_training", "ticks")
    k = cfg.window_partitions
    days = [date(2026, 3, 2) + timedelta(days=i) for i in range(k + 1)]
    frames = [training.partition_features(tick_generator.generate_ticks(d, cfg.symbols, ticks_per_day, seed=seed + i), cfg)
              for i, d in enumerate(days)]

    def model(end: int):  # the window of K partitions ending at frames[end], its last one held out
        history = pd.concat(frames[end - k + 1:end], ignore_index=True)
        history = history.sort_values(["bar_start", "symbol"], kind="stable")
        cutoff = history["bar_start"].quantile(1.0 - cfg.valid_fraction).floor(f"{cfg.bar_seconds}s")
        bar = pd.Timedelta(seconds=cfg.bar_seconds)
        return training.train(history[history["bar_start"] + bar < cutoff], history[history["bar_start"] >= cutoff],
                              cfg)

    test = frames[k]
    right = [(training.predict(m.booster, test, m.features, num_iteration=m.best_iteration) >= 0.5) == test["label"]
             for m in (model(k), model(k - 1))]
    return _mcnemar("ticks", seed, np.asarray(right[0]), np.asarray(right[1]))


def _mcnemar(dataset: str, seed: int, candidate: np.ndarray, champion: np.ndarray) -> dict:
    return {"dataset": dataset, "seed": seed, "n": int(len(candidate)), "champion": float(champion.mean()),
            "candidate": float(candidate.mean()), "discordance": float(np.mean(candidate != champion))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="mnist,cifar10,power,ticks")
    parser.add_argument("--seeds", default="1,2,3")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    measure = {"mnist": lambda s: images("mnist", s), "cifar10": lambda s: images("cifar10", s),
               "power": power, "ticks": ticks}
    for dataset in args.only.split(","):
        rows = [measure[dataset](seed) for seed in seeds]
        for row in rows:
            print(json.dumps(row), flush=True)
        key = "sd" if dataset == "power" else "discordance"
        values = [r[key] for r in rows]
        print(f"{dataset}: {key} min {min(values):.4g}, median {statistics.median(values):.4g}, max {max(values):.4g} "
              f"({len(values)} seeds)", flush=True)


if __name__ == "__main__":
    main()
