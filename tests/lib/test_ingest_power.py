"""Landing -> ingest -> immutable snapshot, in an isolated RETRAIN_HOME."""

from __future__ import annotations

import json
from datetime import datetime as real_datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from retrain import snapshots, storage
from retrain.data import power
from retrain.errors import DataFormatError, LandingPathError, SnapshotError
from retrain.ingest import landing
from retrain.ingest import power as ingest
from retrain.settings import get_settings

DATASET = "household_power"
EVENT_KEYS = {"schema", "dataset", "uri", "version", "sha256", "rows", "partition", "source_files",
              "time_range", "parent", "gaps", "arrival"}


@pytest.fixture
def home(retrain_home):
    data = Path(get_settings().data_root)
    assert data == (retrain_home / "data").resolve()
    return data


@pytest.fixture(scope="module")
def sample_bytes() -> bytes:
    return power.generate_power(2000, seed=11)


def _write(folder: Path, name: str, data: bytes) -> str:
    path = folder / name
    path.write_bytes(data)
    return str(path)


def _versions(data: Path) -> list[str]:
    folder = data / "curated" / DATASET
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(("shards", "head"))) if folder.is_dir() else []


def test_land_then_ingest_commits_a_snapshot_and_archives_the_file(home, tmp_path, sample_bytes):
    source = _write(tmp_path, "power_2026-01-01.txt", sample_bytes)
    landed = landing.land(DATASET, source)
    assert Path(landed) == home / "landing" / DATASET / "power_2026-01-01.txt"
    assert landing.pending(DATASET) == ["power_2026-01-01.txt"]

    result = ingest.ingest_file("power_2026-01-01.txt", "manual__2026-01-01T00:00:00+00:00")

    assert result.status == "ingested" and result.emits_event
    version = result.snapshot.version
    assert version == ingest.version_for(None, sample_bytes)
    folder = home / "curated" / DATASET / f"version={version}"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json"], "a snapshot is a manifest over shards"
    assert _versions(home) == [f"version={version}"], "no staging folder left behind"
    shard = home / "curated" / DATASET / result.snapshot.files[0]
    assert shard.parent.name == "month=2006-12" and shard.name == f"{storage.sha256(str(shard))[:16]}.parquet"

    table = pq.read_table(shard)
    assert table.column_names == power.COLUMNS
    assert table.num_rows == 2000
    # parquet has no second-resolution timestamps: the snapshot holds the same instants (as ms)
    assert table.cast(power.SCHEMA).equals(power.read_power_bytes(sample_bytes, "x"))

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["rows"] == 2000 and manifest["version"] == version
    assert manifest["source_files"][0]["sha256"] == storage.sha256(source)
    assert manifest["time_range"] == ["2006-12-16 17:24:00", "2006-12-18 02:43:00"]

    extra = result.snapshot.event_extra()
    assert set(extra) == EVENT_KEYS
    assert extra["schema"] == 1
    assert extra["dataset"] == DATASET
    assert extra["uri"].startswith("file:///")
    assert extra["uri"].endswith(f"/curated/{DATASET}/version={version}")
    assert storage.from_uri(extra["uri"]) == str(folder)
    assert extra["version"] == version
    assert extra["sha256"] == manifest["sha256"] and len(extra["sha256"]) == 64
    assert extra["rows"] == 2000
    assert extra["partition"] is None
    assert extra["source_files"] == ["power_2026-01-01.txt"]
    assert extra["time_range"] == ["2006-12-16 17:24:00", "2006-12-18 02:43:00"] and extra["parent"] is None
    assert extra["arrival"]["rows_added"] == 2000 and extra["arrival"]["rows_corrected"] == 0
    assert extra["gaps"] == []
    json.dumps(extra)  # an asset-event extra must be JSON

    # the landed file left landing by rename, byte for byte, into the archive
    assert landing.pending(DATASET) == []
    archived = home / "archive" / DATASET / version / "power_2026-01-01.txt"
    assert archived.read_bytes() == sample_bytes

    # the event names a snapshot that opens and verifies
    opened = snapshots.from_uri(extra["uri"])
    snapshots.verify(opened, extra["sha256"])
    assert snapshots.read_parquet(opened).num_rows == 2000


def test_relanding_the_same_bytes_is_a_duplicate(home, tmp_path, sample_bytes):
    landing.land(DATASET, _write(tmp_path, "first.txt", sample_bytes))
    first = ingest.ingest_file("first.txt", "run_1")
    landing.land(DATASET, _write(tmp_path, "copy_of_first.txt", sample_bytes))

    again = ingest.ingest_file("copy_of_first.txt", "run_2")

    assert again.status == "duplicate" and not again.emits_event
    assert again.snapshot.version == first.snapshot.version
    assert _versions(home) == [f"version={first.snapshot.version}"]
    assert again.snapshot.manifest["produced_by"] == {"run_id": "run_1", "file": "first.txt"}
    assert [f["name"] for f in again.snapshot.manifest["source_files"]] == ["first.txt", "copy_of_first.txt"]
    assert sorted(p.name for p in (home / "archive" / DATASET / first.snapshot.version).iterdir()) == [
        "copy_of_first.txt", "first.txt"]
    assert landing.pending(DATASET) == []


def test_different_bytes_give_a_new_version(home, tmp_path, sample_bytes):
    landing.land(DATASET, _write(tmp_path, "a.txt", sample_bytes))
    landing.land(DATASET, _write(tmp_path, "b.txt", power.generate_power(1500, seed=12, level=1.3)))
    a = ingest.ingest_file("a.txt", "run_1")
    b = ingest.ingest_file("b.txt", "run_1")
    assert a.status == b.status == "ingested"
    assert a.snapshot.version != b.snapshot.version
    assert len(_versions(home)) == 2


def test_retry_of_the_same_run_after_commit_is_resumed(home, tmp_path, sample_bytes, monkeypatch):
    landing.land(DATASET, _write(tmp_path, "power.txt", sample_bytes))

    # the first try commits the snapshot, then dies before archiving the claimed file
    def crash(*args, **kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(landing, "archive", crash)
    with pytest.raises(RuntimeError, match="worker lost"):
        ingest.ingest_file("power.txt", "scheduled__2026-01-01")
    monkeypatch.undo()
    committed = _versions(home)
    assert len(committed) == 1

    retry = ingest.ingest_file("power.txt", "scheduled__2026-01-01")

    assert retry.status == "resumed" and retry.emits_event
    assert _versions(home) == committed
    assert retry.snapshot.event_extra()["source_files"] == ["power.txt"]
    assert (home / "archive" / DATASET / retry.snapshot.version / "power.txt").read_bytes() == sample_bytes


def test_retry_before_commit_ingests(home, tmp_path, sample_bytes, monkeypatch):
    landing.land(DATASET, _write(tmp_path, "power.txt", sample_bytes))

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(snapshots, "write_shard", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest.ingest_file("power.txt", "run_1")
    monkeypatch.undo()
    assert _versions(home) == [], "a failed commit leaves no snapshot (and no staging folder)"
    assert landing.pending(DATASET) == [], "the file stays claimed by the run"

    retry = ingest.ingest_file("power.txt", "run_1")
    assert retry.status == "ingested"
    assert retry.snapshot.rows == 2000


def test_retry_of_the_same_run_after_archive_is_resumed(home, tmp_path, sample_bytes):
    # the task finished ingest_file, then died before Airflow recorded success
    landing.land(DATASET, _write(tmp_path, "power.txt", sample_bytes))
    first = ingest.ingest_file("power.txt", "run_1")
    retry = ingest.ingest_file("power.txt", "run_1")
    assert retry.status == "resumed" and retry.emits_event
    assert retry.snapshot.version == first.snapshot.version
    assert retry.snapshot.event_extra() == first.snapshot.event_extra()
    assert _versions(home) == [f"version={first.snapshot.version}"]


def test_another_run_cannot_claim_a_file_archived_by_a_different_run(home, tmp_path, sample_bytes):
    landing.land(DATASET, _write(tmp_path, "power.txt", sample_bytes))
    ingest.ingest_file("power.txt", "run_1")
    with pytest.raises(LandingPathError, match="landed file is gone"):
        ingest.ingest_file("power.txt", "run_2")


def test_unparseable_file_is_quarantined_with_a_reason(home, tmp_path):
    bad = (power.HEADER + "\n16/12/2006;17:24:00;4.216;0.418;abc;18.400;0.000;1.000;17.000\n").encode()
    landing.land(DATASET, _write(tmp_path, "bad.txt", bad))

    with pytest.raises(DataFormatError) as info:
        ingest.ingest_file("bad.txt", "run_1")

    assert info.value.file == "bad.txt" and "abc" in str(info.value)
    folder = home / "quarantine" / DATASET
    assert (folder / "bad.txt").read_bytes() == bad, "the file is kept, byte for byte"
    reason = json.loads((folder / "bad.txt.reason.json").read_text())
    assert reason["rule"] == "numeric columns must hold numbers or '?'"
    assert "abc" in reason["observed"]
    assert reason["file"] == "bad.txt" and reason["run_id"] == "run_1" and reason["dataset"] == DATASET
    assert landing.pending(DATASET) == []
    assert _versions(home) == []
    assert not (home / "archive").exists()


def test_empty_file_is_quarantined(home, tmp_path):
    landing.land(DATASET, _write(tmp_path, "empty.txt", b""))
    with pytest.raises(DataFormatError, match="must not be empty"):
        ingest.ingest_file("empty.txt", "run_1")
    folder = home / "quarantine" / DATASET
    assert (folder / "empty.txt").read_bytes() == b""
    assert json.loads((folder / "empty.txt.reason.json").read_text())["observed"] == "0 bytes"


def test_second_bad_file_with_the_same_name_does_not_overwrite_the_first(home, tmp_path):
    for i in range(2):
        landing.land(DATASET, _write(tmp_path, "bad.txt", f"not a power file {i}\n".encode()))
        with pytest.raises(DataFormatError):
            ingest.ingest_file("bad.txt", f"run_{i}")
    kept = sorted(p.read_bytes() for p in (home / "quarantine" / DATASET).iterdir() if not p.name.endswith(".json"))
    assert kept == [b"not a power file 0\n", b"not a power file 1\n"]


class _FrozenClock(real_datetime):
    @classmethod
    def now(cls, tz=None):
        return real_datetime(2026, 1, 1, 12, 0, 0, tzinfo=tz)


def test_quarantine_never_overwrites_within_one_second(home, tmp_path, monkeypatch):
    monkeypatch.setattr(landing, "datetime", _FrozenClock)
    for i in range(3):
        landing.land(DATASET, _write(tmp_path, "bad.txt", f"not a power file {i}\n".encode()))
        with pytest.raises(DataFormatError):
            ingest.ingest_file("bad.txt", f"run_{i}")
    kept = sorted(p.read_bytes() for p in (home / "quarantine" / DATASET).iterdir() if not p.name.endswith(".json"))
    assert kept == [f"not a power file {i}\n".encode() for i in range(3)]


# --------------------------------------------------------------------------------------------------------
# landing names


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/escape.txt", "a/../../escape.txt", "..", "a\\..\\escape.txt"])
def test_landing_refuses_names_outside_the_landing_folder(home, tmp_path, name):
    source = _write(tmp_path, "ok.txt", b"x")
    with pytest.raises(LandingPathError, match="rule: a plain file name"):
        landing.land(DATASET, source, name=name)
    assert not (home / "landing" / "escape.txt").exists()
    assert landing.pending(DATASET) == []


def test_safe_child(tmp_path):
    folder = str(tmp_path / "landing")
    assert storage.safe_child(folder, "power.txt") == f"{folder}/power.txt"
    assert storage.safe_child(folder, "power..txt") == f"{folder}/power..txt"
    assert storage.safe_child(folder, "date=2026-03-02") == f"{folder}/date=2026-03-02"
    for bad in ("/abs/power.txt", "../power.txt", "sub/../../power.txt", "..", "", "a\x00b", "sub/power.txt",
                "..power.txt", ".power.txt", ".", "a\nb", "x" * 256):
        with pytest.raises(LandingPathError):
            storage.safe_child(folder, bad)


def test_claim_of_a_file_that_never_landed_is_an_error(home):
    with pytest.raises(LandingPathError, match="landed file is gone"):
        ingest.ingest_file("never_landed.txt", "run_1")


def test_pending_skips_uploads_in_progress(home, tmp_path):
    landing.land(DATASET, _write(tmp_path, "b.txt", b"x"))
    landing.land(DATASET, _write(tmp_path, "a.txt", b"x"))
    (home / "landing" / DATASET / ".upload.tmp").write_bytes(b"partial")
    assert landing.pending(DATASET) == ["a.txt", "b.txt"]


# --------------------------------------------------------------------------------------------------------
# snapshot immutability


@pytest.fixture
def committed(home, tmp_path, sample_bytes):
    landing.land(DATASET, _write(tmp_path, "power.txt", sample_bytes))
    return ingest.ingest_file("power.txt", "run_1").snapshot


def test_verify_accepts_an_untouched_snapshot(committed):
    snapshots.verify(committed)
    snapshots.verify(committed, committed.sha256)
    reopened = snapshots.load(DATASET, committed.version)
    assert reopened is not None and reopened.manifest == committed.manifest


def test_verify_rejects_a_tampered_parquet_file(committed):
    part = Path(committed.file(committed.files[0]))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="sha256 must match the manifest") as info:
        snapshots.verify(committed)
    assert committed.files[0] in str(info.value)


def test_verify_rejects_a_rewritten_parquet_file_with_the_same_rows(committed):
    part = Path(committed.file(committed.files[0]))
    pq.write_table(pq.read_table(part), part, compression="snappy")
    with pytest.raises(SnapshotError, match="sha256 must match the manifest"):
        snapshots.verify(committed)


def test_verify_rejects_a_missing_data_file(committed):
    Path(committed.file(committed.files[0])).unlink()
    with pytest.raises(SnapshotError, match="missing"):
        snapshots.verify(committed)


def test_verify_rejects_a_different_expected_sha256(committed):
    with pytest.raises(SnapshotError, match="manifest sha256 must equal the event's") as info:
        snapshots.verify(committed, "0" * 64)
    assert committed.sha256[:12] in str(info.value) and "000000000000" in str(info.value)


def test_from_uri_without_manifest_is_an_error(home, committed):
    (Path(committed.location) / "manifest.json").unlink()
    with pytest.raises(SnapshotError, match="no committed snapshot"):
        snapshots.from_uri(committed.event_extra()["uri"])
    assert snapshots.load(DATASET, committed.version) is None


def test_same_content_twice_in_one_run_emits_once(home, tmp_path, sample_bytes):
    landing.land(DATASET, _write(tmp_path, "a.txt", sample_bytes))
    landing.land(DATASET, _write(tmp_path, "b.txt", sample_bytes))
    first = ingest.ingest_file("a.txt", "one_run")
    second = ingest.ingest_file("b.txt", "one_run")
    assert (first.status, second.status) == ("ingested", "duplicate")
    assert not second.emits_event


INGEST = """
import json, sys
from retrain.ingest import power
result = power.ingest_file(sys.argv[1], sys.argv[2])
print(json.dumps({"status": result.status, "version": result.snapshot.version}))
"""


def test_same_content_under_two_names_at_once_is_one_snapshot_naming_both(home, tmp_path, sample_bytes,
                                                                            fault_report):
    """Two ingest processes (two mapped tasks of one run) take the same bytes under two names at the same time.
    The overlap is forced: the test holds the snapshot's real lock until both have claimed their file."""
    import os
    import subprocess
    import sys
    import time

    from retrain import locks

    landing.land(DATASET, _write(tmp_path, "meter-a.txt", sample_bytes))
    landing.land(DATASET, _write(tmp_path, "meter-b.txt", sample_bytes))
    version = ingest.version_for(None, sample_bytes)
    with locks.named_lock(f"snapshot.{DATASET}"):
        processes = [subprocess.Popen([sys.executable, "-c", INGEST, name, "one_run"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=dict(os.environ))
                     for name in ("meter-a.txt", "meter-b.txt")]
        deadline = time.monotonic() + 60
        while landing.pending(DATASET):  # both claimed: both wait at the lock now
            assert time.monotonic() < deadline, landing.pending(DATASET)
            time.sleep(0.05)
        time.sleep(1)
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["status"] for r in results) == ["duplicate", "ingested"]  # one event
    assert _versions(home) == [f"version={version}"]
    snapshot = snapshots.load(DATASET, version)
    assert sorted(s["name"] for s in snapshot.manifest["source_files"]) == ["meter-a.txt", "meter-b.txt"]
    snapshots.verify(snapshot, snapshot.sha256)
    archived = sorted(p.name for p in (home / "archive" / DATASET / version).iterdir())
    fault_report(scenario="same content landed under two names at once", fault="two ingests overlap at the commit",
                 snapshots=len(_versions(home)), trained_or_superseded="-", files_lost=2 - len(archived),
                 double_champions="-", lost_champion_events="-", worst_lag_s="-",
                 events=sum(r["status"] in ("ingested", "resumed") for r in results))
    assert archived == ["meter-a.txt", "meter-b.txt"]  # nothing landed is lost
    # a retry of the duplicate's task emits nothing either
    duplicate = next(n for n, r in zip(("meter-a.txt", "meter-b.txt"), results) if r["status"] == "duplicate")
    assert not ingest.ingest_file(duplicate, "one_run").emits_event
