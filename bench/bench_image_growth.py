"""Image snapshots that grow by drops: ingest cost per drop as the history grows, and training memory on a
snapshot of many shards against one contiguous array.

How it is measured
------------------
The benchmark process stays small (standard library only) and runs everything in subprocesses, each with its
own isolated ``RETRAIN_HOME`` in a temp dir, reaped with ``os.wait4`` so its ``ru_maxrss`` is its own peak
RSS (Linux carries a parent's high-water mark into a child's ``ru_maxrss``; this parent never gets large).

1. Ingest growth (one subprocess): ``DROPS`` sequential MNIST drops (100; ``--quick``: 20) of ``PER_DROP``
   (600) training images each, real IDX files from ``retrain.data.mnist.generate_mnist`` (consecutive
   ``offset``s, so every drop holds new images; the first drop also carries a 100-image test split, as a
   first drop must). Each drop folder is written to disk, landed with ``retrain.ingest.landing.land`` and
   ingested with ``retrain.ingest.images.ingest_drop`` (the ``ingest_mnist`` DAG's work); only the
   ``ingest_drop`` call is timed (``time.perf_counter``). Bytes written per drop: the sizes of the files
   under ``curated/mnist/`` that are new or were replaced (other size, inode or mtime) by that ingest, from a
   listing before and after it (not timed). Printed: a few drops in full, the median ingest time of the first
   10 and the last 10 drops and their ratio (target: last <= 1.5x first), and the same for bytes written
   (target: flat, i.e. proportional to the drop, not to the history), plus the manifest's size, the one part
   that grows with the history (one entry per shard).
2. Training memory: a snapshot of ``TRAIN_DROPS`` (20) drops of ``TRAIN_PER_DROP`` (3000; ``--quick``:
   300) training images (plus a 1000-image test split in the first) is ingested in a setup subprocess,
   which also writes the same training images and labels as one contiguous ``.npy`` pair. Then two fresh
   interpreters, one after the other, each train ``MnistCNN`` for 1 epoch on CPU with the dataset's loop
   settings (``configs/image_dl_training.yaml``, ``epochs=1, device=cpu``) and the same 10 % validation
   rows (``retrain.workloads.images._train_val``, same seed):
   - shards: ``retrain.workloads.images.train`` on the snapshot's event, i.e. the 20 shards memory-mapped,
     training and validation rows gathered batch by batch (what the DAG task runs);
   - contiguous: the one ``.npy`` read into memory whole (``storage.read_bytes`` + ``np.load``, as the
     ingest and the workload read arrays before shards), the training and validation subsets copied out
     (``images[rows]``) into ``TensorDataset``s via ``retrain.training.loop.image_dataset``, and the same
     ``loop.fit``.
   Each child reports its RSS after its imports (torch, the library) and the wall time of the training call;
   its peak RSS comes from ``os.wait4``. Target: shards peak <= 1.5x contiguous peak. Note that RSS
   counts the mapped shard pages an epoch touched (the page cache, shared and reclaimable) as well.

The 1-minute load average is printed before and after: the box has 2 cores; anything else running slows
every timing here.

``BENCH_INGEST_SOURCE=path/to/images.py`` runs part 1 with another version of ``retrain.ingest.images``
(e.g. an older one from git history, for a before/after comparison).

Run from the repo root: ``.venv/bin/python bench/bench_image_growth.py [--quick]``
(full size about 4 minutes on 2 cores; ``--quick`` about 30 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_TIME_RATIO = 1.5
TARGET_RSS_RATIO = 1.5

CHILD_COMMON = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    from retrain.settings import get_settings, reset_settings

    reset_settings()
    assert str(get_settings().home) == str(Path(os.environ["RETRAIN_HOME"]).resolve())

    def write_drop(folder, files):
        folder.mkdir(parents=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return folder

    def mnist_drop(n_train, n_test, offset, first):
        from retrain.data import mnist

        files = mnist.generate_mnist(n_train, max(n_test, 1), seed=7, offset=offset)
        return files if first else {k: v for k, v in files.items() if k.startswith("train")}
    """
)

CHILD_GROWTH = CHILD_COMMON + textwrap.dedent(
    """
    from retrain.ingest import landing

    if os.environ.get("BENCH_INGEST_SOURCE"):
        import importlib.util

        spec = importlib.util.spec_from_file_location("bench_ingest_images", os.environ["BENCH_INGEST_SOURCE"])
        ingest = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ingest)
    else:
        from retrain.ingest import images as ingest

    drops, per_drop, n_test = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    curated = Path(get_settings().curated("mnist"))
    scratch = Path(os.environ["RETRAIN_HOME"]) / "drops"

    def listing():
        if not curated.exists():
            return {}
        return {str(p.relative_to(curated)): (p.stat().st_size, p.stat().st_ino, p.stat().st_mtime_ns)
                for p in curated.rglob("*") if p.is_file()}

    rows = []
    for i in range(drops):
        files = mnist_drop(per_drop, n_test, i * per_drop, first=i == 0)
        folder = write_drop(scratch / f"drop-{i:03d}", files)
        landing.land("mnist", str(folder))
        before = listing()
        started = time.perf_counter()
        result = ingest.ingest_drop("mnist", folder.name, f"bench_{i}")
        seconds = time.perf_counter() - started
        after = listing()
        assert result.status == "ingested", result.status
        manifest = Path(result.snapshot.location) / "manifest.json"
        rows.append({"drop": i + 1, "seconds": seconds, "rows": result.snapshot.rows,
                     "written": sum(v[0] for p, v in after.items() if before.get(p) != v),
                     "manifest": manifest.stat().st_size, "drop_bytes": sum(len(v) for v in files.values()),
                     "curated": sum(v[0] for v in after.values())})
    print(json.dumps(rows))
    """
)

CHILD_SETUP = CHILD_COMMON + textwrap.dedent(
    """
    import numpy as np

    from retrain.data import images
    from retrain.ingest import images as ingest
    from retrain.ingest import landing

    drops, per_drop, n_test, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    scratch = Path(os.environ["RETRAIN_HOME"]) / "drops"
    for i in range(drops):
        folder = write_drop(scratch / f"drop-{i:03d}", mnist_drop(per_drop, n_test, i * per_drop, first=i == 0))
        landing.land("mnist", str(folder))
        result = ingest.ingest_drop("mnist", folder.name, f"setup_{i}")
    snapshot = result.snapshot
    train = ingest.open_splits(snapshot)["train"]
    x, y = train.arrays()
    out.mkdir(parents=True)
    np.save(out / "train_images.npy", x)
    np.save(out / "train_labels.npy", y)
    print(json.dumps({"event": snapshot.event_extra(), "images": int(len(y)), "bytes": int(x.nbytes),
                      "shards": len(train.images.parts)}))
    """
)

CHILD_TRAIN = textwrap.dedent(
    """
    import json, os, sys, time

    def rss_mb():
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    import numpy as np
    import torch

    from retrain import storage
    from retrain.data import images
    from retrain.settings import reset_settings
    from retrain.training import loop
    from retrain.workloads import images as workload

    reset_settings()
    mode, event, work, contiguous = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
    overrides = {"epochs": 1, "device": "cpu"}
    loop.pick_device("cpu")
    after_imports = rss_mb()
    started = time.perf_counter()
    if mode == "shards":
        summary = workload.train(event, workload.dataset_config("mnist", overrides), work)
        samples = summary["train_samples"]
    else:
        x = images.load_array(storage.read_bytes(f"{contiguous}/train_images.npy"))
        y = images.load_array(storage.read_bytes(f"{contiguous}/train_labels.npy"))
        cfg = workload.loop_config("mnist", overrides)
        train_rows, val_rows = workload._train_val(len(y), workload.dataset_config("mnist").validation_fraction, cfg.seed)
        torch.manual_seed(cfg.seed)
        model = workload.build_model("mnist")
        loop.fit(model, loop.image_dataset(x[train_rows], y[train_rows]), loop.image_dataset(x[val_rows], y[val_rows]), cfg)
        samples = len(train_rows)
    print(json.dumps({"after_imports_mb": after_imports, "seconds": time.perf_counter() - started,
                      "train_samples": int(samples)}))
    """
)


def run_child(code: str, args: list[str], home: Path) -> tuple[dict | list, float]:
    """Run a child interpreter with RETRAIN_HOME=home; return its JSON output and its peak RSS (MB)."""
    env = {**os.environ, "RETRAIN_HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    for key in ("RETRAIN_DATA_ROOT", "RETRAIN_CONFIG_DIR", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=out, stderr=err, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.stderr.write(err.read().decode(errors="replace")[-4000:])
            raise SystemExit(f"child failed with exit code {proc.returncode}")
        lines = out.read().decode().strip().splitlines()
    return json.loads(lines[-1]), usage.ru_maxrss / 1024


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def growth(root: Path, drops: int, per_drop: int) -> dict:
    rows, peak = run_child(CHILD_GROWTH, [str(drops), str(per_drop), "100"], root / "growth")
    print(f"\n1. ingest growth: {drops} MNIST drops of {per_drop} training images (first drop + 100 test images); "
          f"child peak RSS {peak:.0f} MB")
    print(f"{'drop':>5} {'rows':>7} {'ingest s':>9} {'written KB':>11} {'manifest KB':>12} {'drop files KB':>14} {'curated MB':>11}")
    shown = sorted({1, 2, 10, drops // 2, drops - 9, drops} & set(range(1, drops + 1)))
    for r in rows:
        if r["drop"] in shown:
            print(f"{r['drop']:>5} {r['rows']:>7} {r['seconds']:>9.3f} {r['written'] / 1024:>11.1f} "
                  f"{r['manifest'] / 1024:>12.1f} {r['drop_bytes'] / 1024:>14.1f} {r['curated'] / 2**20:>11.1f}")
    k = min(10, drops // 2)
    first, last = rows[:k], rows[-k:]
    t_first, t_last = _median([r["seconds"] for r in first]), _median([r["seconds"] for r in last])
    b_first, b_last = _median([r["written"] for r in first]), _median([r["written"] for r in last])
    m_first, m_last = _median([r["manifest"] for r in first]), _median([r["manifest"] for r in last])
    print(f"ingest time, median of first {k} vs last {k}: {t_first * 1000:.1f} ms vs {t_last * 1000:.1f} ms: "
          f"{t_last / t_first:.2f}x (target <= {TARGET_TIME_RATIO}x: {'met' if t_last <= TARGET_TIME_RATIO * t_first else 'MISSED'})")
    print(f"bytes written per drop, median of first {k} vs last {k}: {b_first / 1024:.1f} KB vs {b_last / 1024:.1f} KB: "
          f"{b_last / b_first:.2f}x (of which manifest {m_first / 1024:.1f} KB vs {m_last / 1024:.1f} KB)")
    print(f"total written over {drops} drops: {sum(r['written'] for r in rows) / 2**20:.1f} MB; "
          f"curated at the end: {rows[-1]['curated'] / 2**20:.1f} MB")
    return {"time_ratio": t_last / t_first, "bytes_ratio": b_last / b_first}


def training(root: Path, drops: int, per_drop: int) -> dict:
    setup, setup_peak = run_child(CHILD_SETUP, [str(drops), str(per_drop), "1000", str(root / "contiguous")],
                                  root / "train")
    print(f"\n2. training memory: snapshot of {setup['shards']} shards, {setup['images']} training images "
          f"({setup['bytes'] / 2**20:.1f} MB of pixels); setup child peak RSS {setup_peak:.0f} MB (not measured)")
    results = {}
    for mode in ("shards", "contiguous"):
        work = root / "train" / "work" / mode
        out, peak = run_child(CHILD_TRAIN, [mode, json.dumps(setup["event"]), str(work), str(root / "contiguous")],
                              root / "train")
        results[mode] = out | {"peak_mb": peak}
        print(f"{mode:<11} 1 epoch on {out['train_samples']} images: {out['seconds']:6.1f} s, RSS after imports "
              f"{out['after_imports_mb']:6.0f} MB, peak RSS {peak:6.0f} MB (+{peak - out['after_imports_mb']:.0f} MB)")
    ratio = results["shards"]["peak_mb"] / results["contiguous"]["peak_mb"]
    print(f"peak RSS shards / contiguous: {ratio:.2f}x (target <= {TARGET_RSS_RATIO}x: "
          f"{'met' if ratio <= TARGET_RSS_RATIO else 'MISSED'})")
    return {"rss_ratio": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (20 drops; 20 x 300 training images)")
    parser.add_argument("--only", choices=["growth", "training"], help="run one of the two measurements")
    args = parser.parse_args()
    drops, per_drop = (20, 600) if args.quick else (100, 600)
    train_drops, train_per_drop = (20, 300) if args.quick else (20, 3000)
    print(f"load average (1 min) before: {os.getloadavg()[0]:.2f}; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-image-growth-") as tmp:
        root = Path(tmp)
        if args.only in (None, "growth"):
            growth(root, drops, per_drop)
        if args.only in (None, "training"):
            training(root, train_drops, train_per_drop)
    print(f"\nload average (1 min) after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
