"""`retrain sample-data`: each kind writes a drop the real readers accept, atomically and reproducibly."""

from __future__ import annotations

import subprocess
import sys
from datetime import date

from retrain import samples


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "retrain", "sample-data", *args], capture_output=True, text=True,
                          timeout=120)


def test_power_sample_is_a_uci_file(tmp_path):
    from retrain.data.power import read_power_file

    path = samples.power(str(tmp_path / "p.txt"), rows=3 * 1440, seed=3)
    table = read_power_file(path)
    assert table.num_rows == 3 * 1440
    assert path == str(tmp_path / "p.txt")


def test_image_samples_are_real_drops(tmp_path):
    from retrain.data import cifar10, mnist

    samples.mnist(str(tmp_path / "m"), n_train=20, n_test=10, seed=1)
    files = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    split = mnist.read_files(files)
    assert len(split["train"][0]) == 20 and len(split["test"][0]) == 10

    samples.cifar10(str(tmp_path / "c"), n_per_batch=8, n_batches=2, n_test=4, seed=1)
    names, batches = cifar10.read_files({p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()})
    assert names == cifar10.CLASSES and sum(len(labels) for _, labels in batches.values()) == 20
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]  # nothing half-written left


def test_tick_samples_are_one_folder_per_partition(tmp_path):
    from retrain.data import tick_reader

    folders = samples.ticks(str(tmp_path), start=date(2026, 3, 2), days=2, ticks_per_day=2000, symbols=["AAA", "BBB"])
    assert [f.rsplit("/", 1)[1] for f in folders] == ["date=2026-03-02", "date=2026-03-03"]
    table = tick_reader.normalize_partition([("ticks.csv", (tmp_path / "date=2026-03-03" / "ticks.csv").read_bytes())],
                                      "2026-03-03")
    assert table.num_rows == 2000 and set(table.column("symbol").to_pylist()) == {"AAA", "BBB"}


def test_the_cli_writes_every_kind_and_the_same_seed_gives_the_same_bytes(tmp_path):
    for attempt in ("a", "b"):
        out = _cli("power", "--rows", "1440", "--seed", "7", "-o", str(tmp_path / attempt / "p.txt"))
        assert out.returncode == 0, out.stderr
    assert (tmp_path / "a" / "p.txt").read_bytes() == (tmp_path / "b" / "p.txt").read_bytes()
    assert _cli("mnist", "--train", "10", "--test", "5", "-o", str(tmp_path / "m")).returncode == 0
    assert _cli("cifar10", "--per-batch", "5", "--test", "5", "-o", str(tmp_path / "c")).returncode == 0
    out = _cli("ticks", "--start", "2026-03-02", "--days", "1", "--ticks-per-day", "500", "--symbols", "X,Y",
               "-o", str(tmp_path / "t"))
    assert out.returncode == 0 and "retrain land ticks" in out.stdout
    assert (tmp_path / "t" / "date=2026-03-02" / "ticks.csv").exists()


def test_the_cli_rejects_an_unknown_kind_with_usage():
    out = _cli("parquet", "-o", "/tmp/x")
    assert out.returncode == 2 and "invalid choice: 'parquet'" in out.stderr
