"""Tick partitions in-process: ingest three partitions, train on their window, then the backfill policy."""

from __future__ import annotations

from datetime import date

import pytest

DAYS = ["2026-03-02", "2026-03-03", "2026-03-04"]


@pytest.fixture(scope="module")
def dags(airflow_db):
    from inprocess import load_dags

    return load_dags()


def _land(tmp_path, day: str, seed: int) -> None:
    from retrain.data import tick_generator
    from retrain.ingest import landing

    table = tick_generator.generate_ticks(date.fromisoformat(day), ticks_per_day=40_000, seed=seed)
    folder = tmp_path / f"date={day}"
    folder.mkdir()
    (folder / "ticks.csv").write_bytes(tick_generator.to_csv_bytes(table))
    landing.land("ticks", str(folder))


@pytest.fixture(scope="module")
def tick_chain(dags, tmp_path_factory):
    from inprocess import asset_events

    tmp = tmp_path_factory.mktemp("ticks")
    ingests = []
    for seed, day in enumerate(DAYS):
        _land(tmp, day, seed)
        ingests.append(dags.get_dag("ingest_ticks").test(run_conf={"partition": day}))
    train = dags.get_dag("time_series_training").test(run_conf={"partition": DAYS[-1]})
    return {"ingests": ingests, "train": train, "events": asset_events("ticks"),
            "candidates": asset_events("ticks_direction_lgbm.candidate")}


def test_each_partition_is_ingested_once_with_its_event(tick_chain):
    assert [str(r.state) for r in tick_chain["ingests"]] == ["success"] * 3
    extras = [e["extra"] for e in tick_chain["events"]]
    assert [e["partition"] for e in extras] == DAYS
    # each event names its partition's immutable version folder
    assert all(e["uri"].endswith(f"date={e['partition']}/version={e['version']}") for e in extras)


def test_training_uses_the_window_and_logs_it(tick_chain):
    import mlflow

    from inprocess import task_states
    from retrain.settings import get_settings

    assert str(tick_chain["train"].state) == "success", task_states(tick_chain["train"])
    extra = tick_chain["candidates"][-1]["extra"]
    assert extra["data"]["partitions"] == DAYS and extra["data"]["window_end"] == DAYS[-1]
    events = [e["extra"] for e in tick_chain["events"]]
    named = [{"partition": e["partition"], "version": e["version"], "sha256": e["sha256"]} for e in events]
    assert extra["data"]["versions"] == named  # exactly the versions the ingest events named
    run = mlflow.MlflowClient(get_settings().mlflow_tracking_uri).get_run(extra["run_id"])
    assert run.data.tags["data.partitions"] == ",".join(DAYS)
    assert run.data.tags["data.window_versions"] == ",".join(f"{e['partition']}={e['version']}" for e in events)
    metrics = run.data.metrics
    assert {"test_accuracy", "baseline_majority_accuracy", "baseline_persistence_accuracy"} <= set(metrics)


def test_reingesting_an_unchanged_partition_emits_nothing(tick_chain, dags):
    from inprocess import asset_events, task_states
    from retrain.ingest import ticks

    before = len(asset_events("ticks"))
    assert ticks.reland(DAYS[0])
    run = dags.get_dag("ingest_ticks").test(run_conf={"partition": DAYS[0]})
    assert task_states(run)["ingest_partition"] == "skipped"
    assert len(asset_events("ticks")) == before


def test_commits_ask_for_one_training_run_while_none_is_queued(tick_chain):
    """The first commit starts a run; the later ones find it still queued (no scheduler here) and start none:
    the queued run reads every commit when it starts, so N commits never queue N runs."""
    from airflow.models.dagrun import DagRun

    from inprocess import task_states

    states = [task_states(r) for r in tick_chain["ingests"]]
    assert [s["request_training"] for s in states] == ["success", "skipped", "skipped"], states
    requested = DagRun.find(dag_id="time_series_training", run_id=f"ticks_commit__{tick_chain['ingests'][0].run_id}")
    assert len(requested) == 1 and str(requested[0].state) == "queued"


def test_the_candidate_event_carries_the_window_end_as_partition_key(tick_chain):
    """A run without a partition key still feeds the partition-aware promote_partitioned_models."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        keys = [session.get(AssetEvent, e["id"]).partition_key for e in tick_chain["candidates"]]
    assert keys == [DAYS[-1]]


def test_backfill_of_an_older_partition_does_not_train(tick_chain, dags, tmp_path):
    """A partition outside the newest window trains nothing, and a window whose exact versions were trained
    already (a re-run for a day inside it, nothing changed) trains nothing again."""
    from inprocess import asset_events, task_states

    before = len(asset_events("ticks_direction_lgbm.candidate"))
    older = "2026-03-01"
    _land(tmp_path, older, 9)
    assert str(dags.get_dag("ingest_ticks").test(run_conf={"partition": older}).state) == "success"
    for partition in (older, DAYS[1], None):  # None: a run a commit asked for resolves the newest window
        run = dags.get_dag("time_series_training").test(run_conf={"partition": partition})
        states = task_states(run)
        assert states["resolve_window"] == "skipped" and states["train"] == "skipped", (partition, states)
    assert len(asset_events("ticks_direction_lgbm.candidate")) == before


def test_a_crash_between_registering_and_aliasing_is_repaired(tick_chain, monkeypatch):
    """The first judge registers the version, then dies before moving the alias; the next judge reuses that
    version (no second one) and finishes the promotion."""
    from retrain import registry, tracking
    from retrain.workloads import promote

    model = "ticks_direction_lgbm"
    extra = tick_chain["candidates"][-1]["extra"]

    def crash(*args, **kwargs):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(registry, "move_champion", crash)
    with pytest.raises(RuntimeError):
        promote.judge(extra, {"dag_id": "test", "run_id": "crash"})
    monkeypatch.undo()
    versions = tracking.client().search_model_versions(f"name='{model}'")
    assert len(versions) == 1 and registry.alias_version(model, registry.CHAMPION) is None
    assert "promotion.decision" not in tracking.client().get_run(extra["run_id"]).data.tags

    decision = promote.judge(extra, {"dag_id": "test", "run_id": "repair"})
    assert decision["outcome"] == "first_model", decision
    assert decision["version"] == str(versions[0].version)
    assert len(tracking.client().search_model_versions(f"name='{model}'")) == 1
    assert registry.alias_version(model, registry.CHAMPION).version == str(versions[0].version)


def test_an_older_window_candidate_is_never_promoted(tick_chain, tmp_path):
    """A champion trained on the window ending DAYS[-1]; a candidate claiming an older window is rejected."""
    import json

    import mlflow

    from retrain import registry, tracking
    from retrain.workloads import promote

    model = "ticks_direction_lgbm"
    extra = tick_chain["candidates"][-1]["extra"]
    current = registry.alias_version(model, registry.CHAMPION)
    version = registry.register(model, extra["model_uri"], extra["run_id"], {"data.window_end": DAYS[-1]}, "champion")
    registry.move_champion(model, version.version, expected_champion=current.version if current else None,
                           action="promote", by="test", reason="window champion")
    # a second candidate run (same model and held-out examples) whose data window ends earlier
    client = tracking.client()
    source = client.get_run(extra["run_id"])
    local = mlflow.artifacts.download_artifacts(run_id=extra["run_id"], artifact_path="evaluation",
                                                dst_path=str(tmp_path), tracking_uri=client.tracking_uri)
    with mlflow.start_run(experiment_id=source.info.experiment_id) as older:
        mlflow.log_artifacts(local, "evaluation")
        mlflow.log_metrics(source.data.metrics)
        mlflow.set_tag("quality.verdict", source.data.tags.get("quality.verdict", "passed"))
    stale = json.loads(json.dumps(extra))
    stale["data"]["window_end"] = "2026-03-01"
    stale["run_id"] = older.info.run_id
    decision = promote.judge(stale, {"dag_id": "test", "run_id": "t2"})
    assert decision["outcome"] == "rejected" and "older than the champion" in decision["reasons"][0]
    assert registry.alias_version(model, registry.CHAMPION).version == version.version


def test_a_corrected_day_inside_the_newest_window_retrains_it_once(tick_chain, dags, tmp_path):
    """Re-landing DAYS[1] with changed content commits a new version (the old one stays readable); its run
    trains the newest window once, on exactly that version; the first build's version is untouched."""
    from retrain import snapshots
    from inprocess import asset_events, task_states

    first = next(e["extra"] for e in tick_chain["events"] if e["extra"]["partition"] == DAYS[1])
    _land(tmp_path, DAYS[1], 50)
    assert str(dags.get_dag("ingest_ticks").test(run_conf={"partition": DAYS[1]}).state) == "success"
    corrected = asset_events("ticks")[-1]["extra"]
    assert corrected["partition"] == DAYS[1] and corrected["version"] != first["version"]
    snapshots.open_version("ticks", DAYS[1], first["version"], first["sha256"])  # the first build still verifies

    before = len(asset_events("ticks_direction_lgbm.candidate"))
    run = dags.get_dag("time_series_training").test(run_conf={"partition": DAYS[1]})
    assert str(run.state) == "success", task_states(run)
    candidates = asset_events("ticks_direction_lgbm.candidate")[before:]
    assert len(candidates) == 1
    data = candidates[0]["extra"]["data"]
    assert data["window_end"] == DAYS[-1] and data["partitions"] == DAYS
    assert data["versions"][1] == {"partition": DAYS[1], "version": corrected["version"], "sha256": corrected["sha256"]}

    again = dags.get_dag("time_series_training").test(run_conf={"partition": DAYS[1]})
    assert task_states(again)["resolve_window"] == "skipped"  # the same versions train once
    assert len(asset_events("ticks_direction_lgbm.candidate")) == before + 1


def test_a_partition_on_a_closed_weekday_is_skipped_not_awaited(dags, tmp_path, monkeypatch):
    """FX: the sessions ending on Saturday and Sunday never land; ingest_ticks skips them (closed_weekdays) instead
    of waiting partition_wait_hours for files that never come and failing every weekend."""
    import shutil
    from pathlib import Path

    import yaml

    from inprocess import asset_events, task_states
    from retrain import settings

    configs = tmp_path / "configs"
    shutil.copytree(Path(__file__).resolve().parents[2] / "configs", configs)
    raw = yaml.safe_load((configs / "feeds.yaml").read_text())
    raw["feeds"]["ticks"]["closed_weekdays"] = ["Sat", "Sun"]
    (configs / "feeds.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("RETRAIN_CONFIG_DIR", str(configs))
    settings.reset_settings()
    before = len(asset_events("ticks"))
    try:
        run = dags.get_dag("ingest_ticks").test(run_conf={"partition": "2026-03-07"})  # a Saturday
    finally:
        monkeypatch.undo()
        settings.reset_settings()
    states = task_states(run)
    assert str(run.state) == "success", states
    assert states["trading_day"] == "success" and states["wait_for_partition"] == "skipped"
    assert states["ingest_partition"] == "skipped" and states["request_training"] == "skipped"
    assert len(asset_events("ticks")) == before
