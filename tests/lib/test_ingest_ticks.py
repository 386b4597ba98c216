"""Tick partitions are immutable versions: re-landing keeps every raw file and every build, a training window
names exact (partition, version, sha256) entries and reads only those, and only `retrain gc` removes versions."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from retrain import snapshots, storage
from retrain.data import tick_generator
from retrain.errors import SnapshotError
from retrain.ingest import landing
from retrain.ingest import ticks

DAYS = ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]  # K = 3 (configs): the newest window is the last 3


@pytest.fixture
def land(retrain_home, tmp_path):
    """``land(day, seed)``: land one partition's CSV (a different seed is corrected content)."""

    def _land(day: str, seed: int, name: str = "ticks.csv") -> None:
        table = tick_generator.generate_ticks(date.fromisoformat(day), ticks_per_day=4_000, seed=seed)
        folder = tmp_path / f"src-{day}-{seed}-{name}" / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)  # the same content again is the same source
        (folder / name).write_bytes(tick_generator.to_csv_bytes(table))
        landing.land("ticks", str(folder))

    return _land


def _ingest(land, day: str, seed: int, run: str):
    land(day, seed)
    return ticks.ingest_partition(day, run)


def _archived_files(day: str) -> list[Path]:
    root = Path(ticks.archive_folder(day))
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_relanding_changed_content_keeps_every_raw_file_and_every_build(land):
    day = DAYS[0]
    results = [_ingest(land, day, seed, f"run-{seed}") for seed in (1, 2, 3)]
    assert [r.status for r in results] == ["ingested"] * 3
    versions = [r.snapshot.version for r in results]
    assert len(set(versions)) == 3

    # every arrival's raw file is still archived, each under its own raw version
    assert len(_archived_files(day)) == 3
    assert len(ticks.archived_versions(day)) == 3
    # the newest build is current, and each event names its own version's folder
    assert snapshots.current_version("ticks", day) == versions[-1]
    for result in results:
        extra = result.snapshot.event_extra()
        assert extra["version"] == result.snapshot.version
        assert extra["uri"].endswith(f"date={day}/version={extra['version']}")
    # the first build is still readable and verifies against the sha256 its event named
    first = results[0].snapshot
    again = snapshots.open_version("ticks", day, first.version, first.sha256)
    assert snapshots.read_parquet(again).num_rows == first.rows
    assert results[-1].snapshot.manifest["replaces"] == versions[1]
    assert [s.version for s in snapshots.partition_versions("ticks", day)] == versions


def test_relanding_the_same_content_is_a_duplicate_and_loses_nothing(land):
    day = DAYS[0]
    first = _ingest(land, day, 1, "run-a")
    archived = _archived_files(day)
    assert ticks.reland(day)  # a backfill: the archived raw files go back as copies
    assert len(_archived_files(day)) == 1  # the archive keeps its own copy meanwhile
    again = ticks.ingest_partition(day, "run-b")
    assert again.status == "duplicate" and not again.emits_event
    assert again.snapshot.version == first.snapshot.version
    assert _archived_files(day) == archived and [p.read_bytes() for p in archived]
    assert storage.listdir(landing.landing_folder("ticks")) == []


def test_a_correction_undone_makes_the_earlier_build_current_again(land):
    day = DAYS[0]
    one = _ingest(land, day, 1, "run-1").snapshot
    _ingest(land, day, 2, "run-2")
    back = _ingest(land, day, 1, "run-3")
    assert back.status == "ingested" and back.emits_event  # the partition's content changed: a new event
    assert back.snapshot.version == one.version and snapshots.current_version("ticks", day) == one.version
    assert len(snapshots.partition_versions("ticks", day)) == 2  # nothing rebuilt, nothing replaced


def test_reland_puts_back_the_raw_files_of_the_current_version(land):
    day = DAYS[0]
    _ingest(land, day, 1, "run-1")
    current = _ingest(land, day, 2, "run-2").snapshot
    assert ticks.reland(day)
    landed = Path(landing.landing_folder("ticks")) / f"date={day}" / "ticks.csv"
    expected = next(s["sha256"] for s in current.manifest["source_files"])
    assert storage.sha256(str(landed)) == expected


@pytest.fixture
def trained(monkeypatch) -> list[dict]:
    """Windows whose training finished, standing in for the MLflow runs resolve_window looks up."""
    from retrain.workloads import timeseries

    windows: list[dict] = []
    monkeypatch.setattr(timeseries, "_trained_run", lambda digest: next(
        (w["window_digest"] for w in windows if w["window_digest"] == digest), None))
    monkeypatch.setattr(timeseries, "_trained_with", lambda partition, version: next(
        (w["window_digest"] for w in windows
         if any(v["partition"] == partition and v["version"] == version for v in w["versions"])), None))
    return windows


@pytest.fixture
def four_days(land, trained):
    return {day: _ingest(land, day, i, f"run-{day}").snapshot for i, day in enumerate(DAYS)}


def test_the_window_names_exact_versions_and_a_corrected_day_inside_it_retrains_it(four_days, land, trained):
    from retrain.workloads import timeseries

    newest = timeseries.resolve_window(DAYS[-1], [four_days[DAYS[-1]].event_extra()])
    assert newest["train"] and newest["window"] == DAYS[1:]
    assert newest["versions"] == [{"partition": d, "version": four_days[d].version, "sha256": four_days[d].sha256}
                                  for d in DAYS[1:]]
    trained.append(newest)
    # a re-run for a day inside the window with nothing changed: the same versions train once
    again = timeseries.resolve_window(DAYS[2], [four_days[DAYS[2]].event_extra()])
    assert not again["train"] and "trained already" in again["reason"]

    corrected = _ingest(land, DAYS[1], 99, "correction").snapshot  # inside the newest window
    window = timeseries.resolve_window(DAYS[1], [corrected.event_extra()])
    assert window["train"] and window["partition"] == DAYS[-1] and window["trigger"] == DAYS[1]
    assert window["versions"][0] == {"partition": DAYS[1], "version": corrected.version, "sha256": corrected.sha256}
    assert window["window_digest"] != newest["window_digest"]

    # the event of the replaced build no longer trains: the correction's run does
    stale = timeseries.resolve_window(DAYS[1], [four_days[DAYS[1]].event_extra()])
    assert not stale["train"] and "rebuilt after this run's event" in stale["reason"]
    # a correction outside the newest window trains nothing (backfill policy)
    old = _ingest(land, DAYS[0], 42, "old-correction").snapshot
    outside = timeseries.resolve_window(DAYS[0], [old.event_extra()])
    assert not outside["train"] and "outside the newest window" in outside["reason"]


def test_before_the_newest_day_trained_only_its_run_trains_the_window(four_days):
    """A backfill that builds the whole newest window: the older days' runs leave it to the newest day's run
    (which reads every current version), so the window trains once, not once per day."""
    from retrain.workloads import timeseries

    for day in DAYS[1:-1]:
        window = timeseries.resolve_window(day, [four_days[day].event_extra()])
        assert not window["train"] and f"newest partition {DAYS[-1]}" in window["reason"]
    assert timeseries.resolve_window(DAYS[-1], [four_days[DAYS[-1]].event_extra()])["train"]


def test_a_window_reads_the_versions_it_recorded_even_after_a_rebuild(four_days, land):
    from retrain.workloads import timeseries

    window = timeseries.resolve_window(DAYS[-1])
    rebuilt = _ingest(land, DAYS[2], 77, "later-rebuild").snapshot
    assert snapshots.current_version("ticks", DAYS[2]) == rebuilt.version
    read = timeseries.window_snapshots(window)
    assert [s.version for s in read] == [v["version"] for v in window["versions"]]
    assert read[1].version == four_days[DAYS[2]].version != rebuilt.version


def test_a_sha256_mismatch_is_a_snapshot_error(four_days):
    from retrain.workloads import timeseries

    window = timeseries.resolve_window(DAYS[-1])
    wrong = json.loads(json.dumps(window))
    wrong["versions"][0]["sha256"] = "0" * 64
    mismatch = r"sha256 must equal the event's \(observed [0-9a-f]{12}…, event 000000000000…\)"
    with pytest.raises(SnapshotError, match=mismatch):
        timeseries.window_snapshots(wrong)

    snapshot = four_days[DAYS[1]]
    data_file = Path(snapshot.file(snapshot.files[0]))
    data_file.write_bytes(data_file.read_bytes()[:-1] + b"\0")  # one byte of a committed build changed
    with pytest.raises(SnapshotError, match=rf"{data_file.name}: sha256 must match the manifest"):
        timeseries.window_snapshots(window)

    missing = json.loads(json.dumps(window))
    missing["versions"][0]["version"] = "feedfacefeedface"
    with pytest.raises(SnapshotError, match=f"partition {DAYS[1]} version feedfacefeedface is not committed"):
        timeseries.window_snapshots(missing)
    with pytest.raises(SnapshotError, match="no recorded versions"):
        timeseries.window_snapshots({"window": DAYS[1:], "events": window["events"]})


def test_gc_keeps_the_newest_versions_and_never_the_current_one(land, capsys):
    day = DAYS[0]
    built = [_ingest(land, day, seed, f"run-{seed}").snapshot for seed in (1, 2, 3, 4)]
    _ingest(land, day, 1, "undo")  # the oldest build is current again
    assert snapshots.current_version("ticks", day) == built[0].version

    raw_of_second = [a.location for a in ticks.archived_versions(day) if a.version == built[1].version]
    assert ticks.gc(2, dry_run=True) and len(snapshots.partition_versions("ticks", day)) == 4  # dry run: nothing
    removed = ticks.gc(2)
    kept = [s.version for s in snapshots.partition_versions("ticks", day)]
    assert kept == [built[0].version, built[2].version, built[3].version]  # the 2 newest and the current one
    assert snapshots.load("ticks", "", day).version == built[0].version
    assert removed == [built[1].location, *raw_of_second] and len(raw_of_second) == 1
    assert not Path(built[1].location).exists()
    # raw files of every kept version are still archived
    assert {a.version for a in ticks.archived_versions(day)} == set(kept)
    assert ticks.gc(2) == []  # nothing older left

    assert _cli(["gc", "ticks", "--keep", "1"]) == 0
    out = capsys.readouterr().out
    assert f"removed {built[2].location}" in out and "kept per partition the 1 newest, the current one" in out
    assert [s.version for s in snapshots.partition_versions("ticks", day)] == [built[0].version, built[3].version]


def _cli(argv: list[str]) -> int:
    """A sub-command in this process (``main`` would also export the stack's environment)."""
    from retrain import cli

    args = cli.build_parser().parse_args(argv)
    return args.func(args)


def test_gc_retention_comes_from_the_validated_ingest_config(edit_config, retrain_home, capsys):
    from retrain import cli, config
    from retrain.errors import ConfigError

    assert config.load("ingest").retention.tick_versions == 3
    assert _cli(["gc", "ticks", "--dry-run"]) == 0
    assert "kept per partition the 3 newest" in capsys.readouterr().out
    edit_config("ingest", lambda raw: raw["retention"].update(tick_versions=0))
    with pytest.raises(ConfigError, match=r"retention.tick_versions: Input should be greater than or equal to 1"):
        _cli(["gc", "ticks"])
    edit_config("ingest", lambda raw: raw["retention"].update(tick_versions=2, keep_forever=True))
    with pytest.raises(ConfigError, match="retention.keep_forever: Extra inputs are not permitted"):
        _cli(["gc", "ticks"])
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["gc", "ticks", "--keep", "0"])
    assert "--keep: must be at least 1 (the current version always stays), got 0" in capsys.readouterr().err
