"""Tick backfills on the real embedded stack: a long one returns and keeps the newest model fresh, and a second
one started while the first is still closing has one clean outcome.

Past one page of partitions (``[api] maximum_page_limit``, 100 by default; this module's stack answers pages of
10, so 25 partitions are three pages) the REST API pages its listings, and one training run per partition (the earlier design)
queued the newest window behind every older partition. Commits now ask for a training run only when none is
queued, so the newest window trains within F of its partition's commit however many partitions the
backfill rebuilds. Airflow keeps a backfill "running" until its scheduler notices, up to 30 s after its last
run, and answers 409 to a second one meanwhile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date, timedelta

import pytest

from retrain.stack import AirflowApi

FIRST = date(2025, 1, 1)  # bench_faults' 365 partitions end on 2025-12-31: a backfill takes days that are over
F = 120  # configs/reconcile.yaml freshness.bound_seconds
PARTITIONS = int(os.environ.get("RETRAIN_FAULT_PARTITIONS", 25))  # bench_faults raises it (fault_scale's variable)
# the API's page size: below the partition count, so every listing of them is paged (bench_faults' 365 partitions
# page at Airflow's default, 100)
PAGE_LIMIT = 10 if PARTITIONS <= 100 else 100


def _budget(partitions: int) -> int:
    """Seconds a backfill of ``partitions`` may take: 2.9 s per partition was measured on 2 cores, doubled."""
    return max(900, 6 * partitions)


pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300 + 2 * _budget(PARTITIONS))]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, stack_in):
    with stack_in(tmp_path_factory.mktemp("e2e-backfill-home"), AirflowApi,
                  {"AIRFLOW__API__MAXIMUM_PAGE_LIMIT": str(PAGE_LIMIT)}) as running:
        yield running


@pytest.fixture(scope="module")
def days() -> list[str]:
    """The partitions the backfill rebuilds: 25 (three REST pages of 10) unless bench_faults asks more."""
    return [(FIRST + timedelta(days=i)).isoformat() for i in range(PARTITIONS)]


def _in_stack(stack, code: str):
    """Run ``code`` (which prints one JSON value) with the stack's environment; returns the value."""
    prelude = "import json, sys\nfrom retrain import environment\nenvironment.apply(override=True)\n"
    out = subprocess.run([sys.executable, "-c", prelude + code], env=stack["env"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _landed(stack) -> list[str]:
    """Everything under landing/ticks/ now."""
    return _in_stack(stack, "from pathlib import Path\nfrom retrain.ingest import landing\n"
                            "root = Path(landing.landing_folder('ticks'))\n"
                            "found = sorted(str(p.relative_to(root)) for p in root.rglob('*')) if root.exists() else []\n"
                            "print(json.dumps(found))")


def _instant(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _backfill(stack, first: str, last: str, **popen):
    seconds = _budget((date.fromisoformat(last) - date.fromisoformat(first)).days + 1)
    return subprocess.Popen(stack["retrain"] + ["backfill", "ticks", first, last, "--timeout", str(seconds)],
                            env=stack["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_a_backfill_of_more_partitions_than_a_rest_page_returns_and_trains_the_newest_window_within_f(stack, tmp_path, days,
                                                                                           fault_report):
    DAYS, PARTITIONS = days, len(days)
    out = subprocess.run(stack["retrain"] + ["sample-data", "ticks", "--start", DAYS[0], "--days", str(PARTITIONS),
                                             "--ticks-per-day", "8000", "-o", str(tmp_path / "ticks")],
                         env=stack["env"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    _in_stack(stack, "from retrain.ingest import landing\n"
                     f"for f in sorted(__import__('pathlib').Path({str(tmp_path / 'ticks')!r}).iterdir()):\n"
                     "    landing.land('ticks', str(f))\nprint(json.dumps(True))")

    started = time.monotonic()
    run = _backfill(stack, DAYS[0], DAYS[-1])
    stdout, stderr = run.communicate(timeout=_budget(PARTITIONS) + 100)
    print(f"retrain backfill of {PARTITIONS} partitions returned after {time.monotonic() - started:.0f} s")
    assert run.returncode == 0, stdout + stderr
    assert "(backfill complete)" in stdout
    assert _landed(stack) == []

    api = stack["api"]
    ingests = [r for r in api.runs("ingest_ticks") if r["run_type"] == "backfill"]
    assert sorted(r["partition_key"] for r in ingests) == DAYS and {r["state"] for r in ingests} == {"success"}

    # the newest window: one FINISHED training run, within F of its newest partition's commit
    found = None
    deadline = time.monotonic() + 2 * F
    while time.monotonic() < deadline and found is None:
        found = _in_stack(stack, f"""
from datetime import datetime
from retrain import snapshots, tracking
from retrain.workloads import timeseries
committed = datetime.fromisoformat(snapshots.load("ticks", "", {DAYS[-1]!r}).manifest["created_at"]).timestamp()
experiment = tracking.client().get_experiment_by_name(tracking.experiment_name(timeseries.WORKLOAD, "ticks"))
finished = "attributes.status = 'FINISHED'"
runs = tracking.client().search_runs([experiment.experiment_id], filter_string=finished) if experiment else []
ends = sorted(r.data.tags.get("data.window_end") for r in runs if r.data.tags.get("retrain.model_uri"))
newest = [r.info.end_time / 1000 - committed for r in runs if r.data.tags.get("data.window_end") == {DAYS[-1]!r}]
print(json.dumps({{"ends": ends, "lag": newest[0]}} if newest else None))""")
        if found is None:
            time.sleep(5)
    training = api.runs("time_series_training")
    fault_report(scenario=f"backfill of {PARTITIONS} tick partitions", fault="many partitions in one backfill",
                 snapshots=PARTITIONS, trained_or_superseded=PARTITIONS if found else 0,
                 files_lost=len(_landed(stack)), double_champions="-", lost_champion_events="-",
                 worst_lag_s=round(found["lag"], 1) if found else f"> {2 * F}", training_runs=len(training))
    assert found is not None, f"the newest window {DAYS[-3]}..{DAYS[-1]} was not trained within {2 * F} s"
    print(f"newest window trained {found['lag']:.1f} s after its partition's commit")
    assert found["lag"] <= F
    assert found["ends"] == [DAYS[-1]]  # the backfill policy: only the newest window trains

    assert len(training) <= 5, f"{len(training)} training runs for {PARTITIONS} partitions: {training}"


def test_a_backfill_started_while_the_previous_one_is_closing_has_one_clean_outcome(stack, days, fault_report):
    """The first re-lands archived copies and rebuilds; the second, started once the first's runs finished but
    before Airflow marked it complete, is refused in one line and puts nothing in landing/."""
    api = stack["api"]
    first, last = days[-3], days[-1]
    attempts: list[str] = []
    for attempt in range(3):  # Airflow marks backfills complete every 30 s: catch one in that gap
        before = {b["id"] for b in api.listing("backfills?dag_id=ingest_ticks&order_by=id", "backfills")}
        a = _backfill(stack, first, last)
        closing = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and a.poll() is None:
            mine = [b for b in api.listing("backfills?dag_id=ingest_ticks&order_by=id", "backfills")
                    if b["id"] not in before]
            # every run of these partitions (cleared and re-run, or new) finished after the backfill began
            runs = [r for r in api.listing("dags/ingest_ticks/dagRuns?order_by=run_after", "dag_runs")
                    if first <= (r.get("partition_key") or "") <= last]
            finished = [r for r in runs if mine and r.get("end_date")
                        and _instant(r["end_date"]) > _instant(mine[0]["created_at"])]
            if mine and not mine[0].get("completed_at") and len(finished) >= 3 and \
                    all(r["state"] in ("success", "failed") for r in runs):
                closing = mine[0]
                break
            time.sleep(0.5)
        if closing is None:
            out, err = a.communicate(timeout=300)
            attempts.append(f"attempt {attempt}: first backfill exit {a.returncode} before it was seen closing: "
                            f"{out[-600:]} {err[-600:]}")
            continue
        landed_before = _landed(stack)
        b = _backfill(stack, first, last)
        b_out, b_err = b.communicate(timeout=120)
        still_closing = not api.get(f"backfills/{closing['id']}").get("completed_at")
        a_out, a_err = a.communicate(timeout=300)
        assert a.returncode == 0, a_out + a_err
        if not still_closing and b.returncode == 0:
            attempts.append(f"attempt {attempt}: the first was marked complete before the second asked")
            continue  # not this scenario: try again
        fault_report(scenario="a second backfill while the first is closing", fault="overlapping backfills",
                     snapshots="-", trained_or_superseded="-", files_lost=len(_landed(stack)), double_champions="-",
                     lost_champion_events="-", worst_lag_s="-", second_exit=b.returncode)
        assert b.returncode == 3, b_out + b_err
        assert b_err.count("\n") == 1 and b_err.startswith("retrain backfill: refused:") and "Traceback" not in b_err
        assert landed_before == [] and _landed(stack) == []
        return
    pytest.fail("could not start a second backfill while the first was closing in 3 attempts:\n" + "\n".join(attempts))


def _partition_state(stack, day: str) -> dict:
    """The partition's current version, every committed version with its sha256, and every archived arrival."""
    return _in_stack(stack, f"""
from retrain import snapshots
from retrain.ingest import ticks
day = {day!r}
print(json.dumps({{"current": snapshots.current_version("ticks", day),
                  "versions": {{s.version: s.sha256 for s in snapshots.partition_versions("ticks", day)}},
                  "raw": sorted([a.version, a.location] for a in ticks.archived_versions(day))}}))""")


def _window_trainings(stack, day: str) -> list[str]:
    """``data.window_versions`` of every finished scheduled candidate run whose window ends on ``day``."""
    return _in_stack(stack, f"""
from retrain import tracking
from retrain.workloads import timeseries
experiment = tracking.client().get_experiment_by_name(tracking.experiment_name(timeseries.WORKLOAD, "ticks"))
runs = tracking.client().search_runs([experiment.experiment_id], filter_string="attributes.status = 'FINISHED'")
print(json.dumps(sorted(r.data.tags["data.window_versions"] for r in runs
                        if r.data.tags.get("data.window_end") == {day!r} and r.data.tags.get("retrain.model_uri")
                        and r.data.tags.get("retrain.trigger") != "adhoc")))""")


def test_a_corrected_partition_backfilled_twice_loses_nothing_and_trains_the_version_its_event_named(
        stack, tmp_path, days, fault_report):
    """The newest partition is re-landed with changed content and backfilled twice: every raw file is still
    archived, the first build still opens against its sha256, and the newest window trained exactly once on
    the corrected version (the version its event named); the second backfill rebuilds the same bytes: nothing
    new."""
    api = stack["api"]
    day = days[-1]
    before = _partition_state(stack, day)
    first = before["current"]
    trainings_before = _window_trainings(stack, day)

    out = subprocess.run(stack["retrain"] + ["sample-data", "ticks", "--start", day, "--days", "1", "--seed", "4242",
                                             "--ticks-per-day", "8000", "-o", str(tmp_path / "fix")],
                         env=stack["env"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    landed = subprocess.run(stack["retrain"] + ["land", "ticks", str(tmp_path / "fix" / f"date={day}")],
                            env=stack["env"], capture_output=True, text=True, timeout=60)
    assert landed.returncode == 0, landed.stderr

    # a landed partition is ingested by its daily run or a backfill: the first backfill takes the correction
    # (a partition already in landing/ is never overwritten by an archived copy), the second rebuilds it again
    for attempt in range(2):
        run = _backfill(stack, day, day)
        stdout, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stdout + stderr
        assert _landed(stack) == []
        if attempt == 0:
            corrected = _partition_state(stack, day)["current"]
            assert corrected != first, f"the corrected partition {day} was not committed by the backfill"
            events = [e for e in api.asset_events("source_dag_id=ingest_ticks&order_by=-timestamp&limit=20")
                      if e["name"] == "ticks" and (e.get("extra") or {}).get("partition") == day]
            assert events and events[0]["extra"]["version"] == corrected
            # its event trains the newest window once, on exactly that version, within F
            deadline = time.monotonic() + 2 * F
            while not [t for t in _window_trainings(stack, day) if f"{day}={corrected}" in t]:
                assert time.monotonic() < deadline, f"the corrected window was not trained within {2 * F} s"
                time.sleep(5)
    time.sleep(10)  # anything the second backfill would have queued has been asked for by now

    after = _partition_state(stack, day)
    trainings = _window_trainings(stack, day)
    new_trainings = [t for t in trainings if t not in trainings_before]
    lost = {tuple(r) for r in before["raw"]} - {tuple(r) for r in after["raw"]}
    # every version but the current one is superseded; the current one must have trained
    trained_versions = [v for v in after["versions"]
                        if v != after["current"] or any(f"{day}={v}" in t for t in trainings)]
    fault_report(scenario="a corrected tick partition, backfilled twice", fault="re-landed content + 2 backfills",
                 snapshots=len(after["versions"]), trained_or_superseded=len(trained_versions),
                 trained_twice=max(0, len(new_trainings) - 1),
                 files_lost=len(lost) + len(_landed(stack)), double_champions="-", lost_champion_events="-",
                 worst_lag_s="-")
    assert not lost and len(after["raw"]) == len(before["raw"]) + 1, "every arrival's raw files stay archived"
    assert after["current"] == corrected and set(after["versions"]) == set(before["versions"]) | {corrected}
    assert _landed(stack) == []
    # the first build is still readable, checked against its own digest
    assert _in_stack(stack, f"from retrain import snapshots\n"
                            f"s = snapshots.open_version('ticks', {day!r}, {first!r}, {before['versions'][first]!r})\n"
                            "print(json.dumps(snapshots.read_parquet(s).num_rows))") > 0
    assert len(new_trainings) == 1 and f"{day}={corrected}" in new_trainings[0], new_trainings
