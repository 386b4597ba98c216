"""Long tick backfills stay cheap: a commit asks for a training run only when none is queued (the queued one
reads the commit when it starts), and a run waits while a backfill still commits newer partitions, at most
`backfill_settle_seconds` after the newest commit."""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path

import pytest

from retrain.data import tick_generator
from retrain.ingest import landing
from retrain.ingest import ticks
from retrain.workloads import timeseries

DAYS = ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]


@pytest.fixture
def land(retrain_home, tmp_path):
    def _land(day: str) -> None:
        folder = tmp_path / f"src-{day}" / f"date={day}"
        folder.mkdir(parents=True)
        table = tick_generator.generate_ticks(date.fromisoformat(day), ticks_per_day=400, seed=int(day[-2:]))
        (folder / "ticks.csv").write_bytes(tick_generator.to_csv_bytes(table))
        landing.land("ticks", str(folder))

    return _land


def _committed_at(day: str) -> float:
    from retrain import snapshots

    created = snapshots.load("ticks", "", day).manifest["created_at"]
    return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()


def test_a_commit_asks_for_a_run_only_when_none_is_queued():
    assert timeseries.training_request("2026-03-05", queued_runs=0) is None
    reason = timeseries.training_request("2026-03-05", queued_runs=1)
    assert "queued" in reason and "this commit included" in reason


def test_a_run_waits_while_a_backfill_commits_newer_partitions(land):
    for day in DAYS:
        land(day)
    for day in DAYS[:2]:
        ticks.ingest_partition(day, f"run-{day}")
    just_after = _committed_at(DAYS[1]) + 1
    reason = timeseries.newer_partition_arriving(now=just_after)
    assert reason and f"{DAYS[2]}..{DAYS[3]}" in reason

    # the backfill stalls (a landed folder nobody ingests): the run waits at most backfill_settle_seconds
    assert timeseries.newer_partition_arriving(now=just_after + 30) is None

    # the backfill reaches its newest partition: nothing newer waits, resolve at once
    for day in DAYS[2:]:
        ticks.ingest_partition(day, f"run-{day}")
    assert timeseries.newer_partition_arriving(now=time.time()) is None


def test_a_partition_of_the_window_still_in_an_ingest_claim_holds_the_run(land):
    """The backfill's newest partition committed before an older one of the same window (runs go in parallel):
    the window is not complete yet."""
    from retrain.settings import get_settings

    for day in DAYS:
        land(day)
    for day in (DAYS[0], DAYS[1], DAYS[3]):
        ticks.ingest_partition(day, f"run-{day}")
    claim = Path(get_settings().ingest_work("run-late", "ticks"))
    claim.mkdir(parents=True)
    (Path(landing.landing_folder("ticks")) / f"date={DAYS[2]}").rename(claim / f"date={DAYS[2]}")
    reason = timeseries.newer_partition_arriving(now=_committed_at(DAYS[3]) + 1)
    assert reason and DAYS[2] in reason
    ticks.ingest_partition(DAYS[2], "run-late")
    assert timeseries.newer_partition_arriving(now=time.time()) is None


def test_an_older_partition_in_landing_does_not_hold_the_newest_window(land):
    for day in DAYS[1:]:
        land(day)
        ticks.ingest_partition(day, f"run-{day}")
    land(DAYS[0])  # a backfill of an older day: the newest window is not waiting for it
    assert timeseries.newer_partition_arriving(now=time.time()) is None


def test_a_requested_run_resolves_the_newest_window(land, monkeypatch):
    monkeypatch.setattr(timeseries, "_trained_run", lambda digest: None)
    assert timeseries.resolve_window(None)["train"] is False  # nothing committed yet
    for day in DAYS:
        land(day)
        ticks.ingest_partition(day, f"run-{day}")
    window = timeseries.resolve_window(None)
    assert window["train"] and window["partition"] == DAYS[-1] and window["window"] == DAYS[1:]
    assert [v["partition"] for v in window["versions"]] == DAYS[1:]
