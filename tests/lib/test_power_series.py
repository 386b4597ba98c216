"""Household power as one growing series: increments, corrections, re-exports and gaps, on real files."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from retrain import config, freshness, samples, snapshots, storage
from retrain.data import power
from retrain.errors import DataFormatError, DataQualityError
from retrain.ingest import landing
from retrain.ingest import power as ingest
from retrain.training import tabular
from retrain.workloads import tabular as workload

DATASET = "household_power"
FEB = datetime(2007, 2, 1)


def _land(folder: Path, name: str, data: bytes, run: str | None = None) -> ingest.IngestResult:
    path = folder / name
    path.write_bytes(data)
    landing.land(DATASET, str(path))
    return ingest.ingest_file(name, run or f"run_{name}")


def _increment(folder: Path, name: str, start: datetime, days: int, seed: int = 3) -> ingest.IngestResult:
    path = folder / name
    samples.power(str(path), days=days, start=start, seed=seed)
    landing.land(DATASET, str(path))
    return ingest.ingest_file(name, f"run_{name}")


def _versions(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "data" / "curated" / DATASET).glob("version=*"))


def _event(snapshot: snapshots.Snapshot) -> dict:
    return snapshot.event_extra()


def _table(snapshot: snapshots.Snapshot) -> pa.Table:
    return snapshots.read_parquet(snapshot).cast(power.SCHEMA)


def _file(tables: list[pa.Table]) -> bytes:
    """A UCI-format file holding ``tables`` (curated rows) in order: what a re-export looks like."""
    lines = [power.HEADER]
    for table in tables:
        for row in table.to_pylist():
            ts = row["timestamp"]
            values = ["?" if row[c] is None else f"{row[c]:.3f}" for c in power.COLUMNS[1:]]
            if row["sub_metering_3"] is None:
                values[-1] = ""
            lines.append(";".join([f"{ts.day}/{ts.month}/{ts.year}", ts.strftime("%H:%M:%S"), *values]))
    return ("\n".join(lines) + "\n").encode()


def test_monthly_increments_accumulate_and_train_once_the_window_is_long_enough(retrain_home, tmp_path):
    cfg = config.dataset_settings("tabular_ml_training", DATASET)
    assert cfg.min_history_days == 38

    feb = _increment(tmp_path, "2007-02.txt", FEB, 28)
    assert feb.status == "ingested"
    with pytest.raises(DataQualityError) as info:
        workload.gate(_event(feb.snapshot), workload.dataset_config(DATASET), str(tmp_path / "gate-1"))
    failure = info.value.failures[0]
    assert failure["expectation"] == "training_window"
    assert "at least 38 days" in failure["rule"] and "28.0 days" in failure["observed"], failure

    mar = _increment(tmp_path, "2007-03.txt", FEB + timedelta(days=28), 30)  # 1 .. 30 March
    apr = _increment(tmp_path, "2007-04.txt", FEB + timedelta(days=58), 31)  # 31 March .. 30 April
    assert [r.snapshot.rows for r in (feb, mar, apr)] == [28 * 1440, 58 * 1440, 89 * 1440]
    assert [r.snapshot.manifest["arrival"]["rows_added"] for r in (feb, mar, apr)] == [28 * 1440, 30 * 1440, 31 * 1440]
    assert apr.snapshot.manifest["time_range"] == ["2007-02-01 00:00:00", "2007-04-30 23:59:00"]
    assert apr.snapshot.manifest["gaps"] == [] and apr.snapshot.manifest["parent"] == mar.snapshot.version
    assert apr.snapshot.manifest["arrival"]["months"] == ["2007-03", "2007-04"]

    # shards: February's is listed by all three snapshots and written once; April rewrote only March
    shards = {r.snapshot.version: {e["month"]: e["path"] for e in r.snapshot.manifest["files"]} for r in (feb, mar, apr)}
    assert shards[feb.snapshot.version]["2007-02"] == shards[mar.snapshot.version]["2007-02"] == shards[apr.snapshot.version]["2007-02"]
    assert shards[mar.snapshot.version]["2007-03"] != shards[apr.snapshot.version]["2007-03"]
    written = sorted(p.relative_to(retrain_home / "data" / "curated" / DATASET).as_posix()
                     for p in (retrain_home / "data" / "curated" / DATASET / "shards").rglob("*.parquet"))
    assert len(written) == 4  # Feb, March (30 days), March (31 days), April
    # earlier snapshots still read exactly what they held
    assert _table(mar.snapshot).num_rows == 58 * 1440

    summary = workload.gate(_event(mar.snapshot), workload.dataset_config(DATASET), str(tmp_path / "gate-2"))
    assert summary["verdict"] == "passed" and summary["window_days_of_readings"] >= 57
    prepared = workload.prepare(_event(apr.snapshot) | {"dataset": DATASET}, workload.dataset_config(DATASET),
                                str(tmp_path / "work"))
    assert prepared["window"]["readings"] == 89 * 1440
    assert prepared["split"]["test"]["end"].startswith("2007-04-30")


def test_an_overlapping_correction_replaces_only_the_changed_readings(retrain_home, tmp_path):
    first = _increment(tmp_path, "feb.txt", FEB, 10).snapshot
    original = _table(first)
    # a correction: the last two days again, 30 readings of one evening changed, the rest identical
    tail = original.slice(original.num_rows - 2 * 1440)
    values = tail["global_active_power"].to_pylist()
    changed = list(range(600, 630))
    for i in changed:
        values[i] = 9.0
    corrected = tail.set_column(1, "global_active_power", pa.array(values, pa.float64()))
    second = _land(tmp_path, "feb-fix.txt", _file([corrected]))

    assert second.status == "ingested"
    arrival = second.snapshot.manifest["arrival"]
    assert (arrival["rows_added"], arrival["rows_corrected"]) == (0, 30)
    first_ts = tail["timestamp"][600].as_py()
    assert arrival["corrected"] == [[str(first_ts), str(first_ts + timedelta(minutes=29)), 30]]
    assert _event(second.snapshot)["arrival"]["rows_corrected"] == 30
    after = _table(second.snapshot)
    assert after.num_rows == original.num_rows
    assert pc.sum(pc.equal(after["global_active_power"], 9.0)).as_py() >= 30
    # the earlier snapshot and its shard are untouched: nothing landed is lost
    snapshots.verify(first, first.sha256)
    assert _table(first).equals(original)


def test_a_full_re_export_yields_only_the_changed_readings(retrain_home, tmp_path):
    a = _increment(tmp_path, "a.txt", FEB, 5).snapshot
    b = _increment(tmp_path, "b.txt", FEB + timedelta(days=5), 5).snapshot
    whole = _table(b)
    identical = _land(tmp_path, "export-1.txt", _file([whole]))
    assert identical.status == "duplicate" and not identical.emits_event
    assert identical.snapshot.version == b.version and len(_versions(retrain_home)) == 2

    values = whole["voltage"].to_pylist()
    values[100] = 230.5 if values[100] != 230.5 else 231.5
    export = _land(tmp_path, "export-2.txt", _file([whole.set_column(3, "voltage", pa.array(values, pa.float64()))]))
    arrival = export.snapshot.manifest["arrival"]
    assert export.status == "ingested" and (arrival["rows_added"], arrival["rows_corrected"]) == (0, 1)
    assert export.snapshot.rows == whole.num_rows and export.snapshot.manifest["parent"] == b.version
    assert f"version={a.version}" in _versions(retrain_home), "earlier snapshots stay"


def test_a_gap_between_arrivals_is_reported_not_filled(retrain_home, tmp_path):
    _increment(tmp_path, "jan.txt", datetime(2007, 1, 1), 10)
    later = _increment(tmp_path, "jan-late.txt", datetime(2007, 1, 20), 5).snapshot  # 11..19 January missing
    gap = {"from": "2007-01-11 00:00:00", "to": "2007-01-19 23:59:00", "minutes": 9 * 1440}
    assert later.manifest["gaps"] == [gap]
    assert later.manifest["arrival"]["gaps_opened"] == [gap]
    assert _event(later)["gaps"] == [gap]
    assert later.rows == 15 * 1440
    inside = tabular.read_range(later, tabular._stamp(gap["from"]), tabular._stamp(gap["to"]))
    assert inside.num_rows == 0, "no reading is invented for the gap"

    # the missing days arrive: the gap closes
    filled = _increment(tmp_path, "jan-mid.txt", datetime(2007, 1, 11), 9).snapshot
    assert filled.manifest["gaps"] == [] and filled.rows == 24 * 1440
    assert filled.manifest["arrival"]["rows_added"] == 9 * 1440


def test_a_snapshot_reads_back_shard_by_shard_with_its_hashes(retrain_home, tmp_path):
    snap = _increment(tmp_path, "q1.txt", datetime(2007, 1, 15), 60).snapshot
    months = [e["month"] for e in snap.manifest["files"]]
    assert months == ["2007-01", "2007-02", "2007-03"]
    total = 0
    for entry in snap.manifest["files"]:
        location = snap.file(entry["path"])
        assert storage.sha256(location) == entry["sha256"]
        assert Path(location).name == f"{entry['sha256'][:16]}.parquet"
        import pyarrow.parquet as pq

        shard = pq.read_table(location)
        assert shard.num_rows == entry["rows"]
        assert {ts.strftime("%Y-%m") for ts in shard["timestamp"].to_pylist()} == {entry["month"]}
        total += shard.num_rows
    assert total == snap.rows == 60 * 1440
    assert snap.sha256 == snapshots.content_digest(snap.manifest["files"])
    manifest_only = sorted(p.name for p in Path(snap.location).iterdir())
    assert manifest_only == ["manifest.json"]


def test_the_training_window_reads_only_the_shards_it_needs(retrain_home, tmp_path, edit_config, monkeypatch):
    def window_40(raw):
        raw["datasets"][DATASET]["window_days"] = 40

    edit_config("tabular_ml_training", window_40)
    snap = _increment(tmp_path, "h1.txt", datetime(2007, 1, 1), 120).snapshot  # January .. April
    opened = []
    real = storage.local_path
    monkeypatch.setattr(storage, "local_path", lambda location: opened.append(location) or real(location))
    work = tmp_path / "work"
    prepared = workload.prepare(_event(snap) | {"dataset": DATASET}, workload.dataset_config(DATASET), str(work))
    assert prepared["window"]["readings"] == 40 * 1440
    assert prepared["window"]["start"] == "2007-03-22 00:00:00"  # 40 days before the end of April
    assert sorted(Path(o).parent.name for o in opened) == ["month=2007-03", "month=2007-04"]


def test_a_window_shorter_than_training_needs_is_refused_by_config(config_dir, edit_config):
    def too_short(raw):
        raw["datasets"][DATASET]["window_days"] = 12

    with pytest.raises(config.ConfigError, match="window_days .12. must be at least the 38 days"):
        edit_config("tabular_ml_training", too_short)
        config.dataset_settings("tabular_ml_training", DATASET)


def test_repeated_timestamps_in_one_file_are_quarantined_and_change_nothing(retrain_home, tmp_path):
    good = _increment(tmp_path, "ok.txt", FEB, 2).snapshot
    table = _table(good)
    doubled = _file([table.slice(0, 10), table.slice(9, 5)])
    with pytest.raises(DataFormatError, match="timestamps must be unique and increasing") as info:
        _land(tmp_path, "doubled.txt", doubled)
    assert "doubled.txt" in str(info.value) and "2007-02-01 00:09:00 repeats" in str(info.value)
    assert (retrain_home / "data" / "quarantine" / DATASET / "doubled.txt").read_bytes() == doubled
    assert snapshots.head(DATASET).version == good.version


def test_the_newest_is_the_later_commit_even_when_it_landed_older_data(retrain_home, tmp_path):
    june = _increment(tmp_path, "june.txt", datetime(2007, 6, 1), 3).snapshot
    march = _increment(tmp_path, "march.txt", datetime(2007, 3, 1), 3).snapshot  # older data, landed later
    assert march.manifest["time_range"][1] == june.manifest["time_range"][1]
    assert freshness.data_order(march.manifest) > freshness.data_order(june.manifest)
    assert march.rows == 6 * 1440 and len(march.manifest["gaps"]) == 1


def test_sample_increments_continue_one_household(tmp_path):
    one = tmp_path / "a.txt"
    samples.power(str(one), days=1, start=FEB, seed=4)
    two = tmp_path / "b.txt"
    samples.power(str(two), days=1, start=FEB + timedelta(days=1), seed=4)
    a, b = (power.read_power_bytes(p.read_bytes(), p.name) for p in (one, two))
    assert b["timestamp"][0].as_py() == a["timestamp"][-1].as_py() + timedelta(minutes=1)
    samples.power(str(tmp_path / "c.txt"), days=1, start=FEB, seed=4)
    assert (tmp_path / "c.txt").read_bytes() == one.read_bytes(), "the same arguments give the same bytes"


def _legacy(data: bytes, name: str) -> snapshots.Snapshot:
    """A snapshot as ingests wrote them before the series: one landed file, its own folder."""
    import hashlib

    table = power.read_power_bytes(data, name)
    return snapshots.commit(
        DATASET, hashlib.sha256(data).hexdigest()[:16], lambda folder: [snapshots.write_parquet(table, folder)],
        rows=table.num_rows, source_files=[{"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}],
        extra={"time_range": [str(table["timestamp"][0].as_py()), str(table["timestamp"][-1].as_py())]})


def test_snapshots_from_before_the_series_stay_readable_and_migrate(retrain_home, tmp_path, capsys):
    from retrain import cli

    first = _legacy(power.generate_power(3 * 1440, start=FEB, seed=1), "old-1.txt")
    second = _legacy(power.generate_power(2 * 1440, start=FEB + timedelta(days=3), seed=2), "old-2.txt")
    assert not first.sharded and first.files == ["part-0.parquet"]
    snapshots.verify(first, first.sha256)
    assert _table(first).num_rows == 3 * 1440  # readable as it is

    assert cli.main(["migrate", "household_power"]) == 0
    out = capsys.readouterr().out
    assert f"snapshot {first.version} -> series snapshot" in out and "migrated 2 of 2" in out
    head = snapshots.head(DATASET)
    assert head.rows == 5 * 1440 and head.manifest["gaps"] == []
    assert snapshots.load(DATASET, second.version).files == ["part-0.parquet"], "the old snapshots stay"

    assert cli.main(["migrate", "household_power"]) == 0
    assert "migrated 0 of 2" in capsys.readouterr().out
    assert snapshots.head(DATASET).version == head.version

    # the next arrival extends the migrated series
    nxt = _increment(tmp_path, "next.txt", FEB + timedelta(days=5), 1).snapshot
    assert nxt.rows == 6 * 1440 and nxt.manifest["parent"] == head.version
