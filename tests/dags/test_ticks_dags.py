"""Tick partitions in-process: ingest three partitions, train on their window, then the backfill policy."""

from __future__ import annotations

from datetime import date

import pytest

DAYS = ["2026-03-02", "2026-03-03", "2026-03-04"]


@pytest.fixture(scope="module")
def dags(airflow_db):
    from retrain.inprocess import load_dags

    return load_dags()


def _land(tmp_path, day: str, seed: int) -> None:
    from retrain.data import ticks
    from retrain.ingest import landing

    table = ticks.generate_ticks(date.fromisoformat(day), ticks_per_day=40_000, seed=seed)
    folder = tmp_path / f"date={day}"
    folder.mkdir()
    (folder / "ticks.csv").write_bytes(ticks.to_csv_bytes(table))
    landing.land("ticks", str(folder))


@pytest.fixture(scope="module")
def tick_chain(dags, tmp_path_factory):
    from retrain.inprocess import asset_events

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
    assert all(e["uri"].endswith(f"date={e['partition']}") for e in extras)


def test_training_uses_the_window_and_logs_it(tick_chain):
    import mlflow

    from retrain.inprocess import task_states
    from retrain.settings import get_settings

    assert str(tick_chain["train"].state) == "success", task_states(tick_chain["train"])
    extra = tick_chain["candidates"][-1]["extra"]
    assert extra["data"]["partitions"] == DAYS and extra["data"]["window_end"] == DAYS[-1]
    run = mlflow.MlflowClient(get_settings().mlflow_tracking_uri).get_run(extra["run_id"])
    assert run.data.tags["data.partitions"] == ",".join(DAYS)
    metrics = run.data.metrics
    assert {"test_accuracy", "baseline_majority_accuracy", "baseline_persistence_accuracy"} <= set(metrics)


def test_reingesting_an_unchanged_partition_emits_nothing(tick_chain, dags):
    from retrain.inprocess import asset_events, task_states
    from retrain.ingest import ticks

    before = len(asset_events("ticks"))
    assert ticks.reland(DAYS[0])
    run = dags.get_dag("ingest_ticks").test(run_conf={"partition": DAYS[0]})
    assert task_states(run)["ingest_partition"] == "skipped"
    assert len(asset_events("ticks")) == before


def test_backfill_of_an_older_partition_does_not_train(tick_chain, dags):
    from retrain.inprocess import asset_events, task_states

    before = len(asset_events("ticks_direction_lgbm.candidate"))
    run = dags.get_dag("time_series_training").test(run_conf={"partition": DAYS[1]})
    states = task_states(run)
    assert states["resolve_window"] == "skipped" and states["train"] == "skipped"
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


def test_an_older_window_candidate_is_never_promoted(tick_chain):
    """A champion trained on the window ending DAYS[-1]; a candidate claiming an older window is rejected."""
    import json

    from retrain import registry
    from retrain.workloads import promote

    model = "ticks_direction_lgbm"
    extra = tick_chain["candidates"][-1]["extra"]
    current = registry.alias_version(model, registry.CHAMPION)
    version = registry.register(model, extra["model_uri"], extra["run_id"], {"data.window_end": DAYS[-1]}, "champion")
    registry.move_champion(model, version.version, expected_champion=current.version if current else None,
                           action="promote", by="test", reason="window champion")
    from retrain import tracking

    tracking.client().delete_tag(extra["run_id"], "promotion.decision")  # judge the same run again, as if older
    stale = json.loads(json.dumps(extra))
    stale["data"]["window_end"] = "2026-03-01"
    stale["run_id"] = extra["run_id"]
    decision = promote.judge(stale, {"dag_id": "test", "run_id": "t2"})
    assert decision["outcome"] == "rejected" and "older than the champion" in decision["reasons"][0]
    assert registry.alias_version(model, registry.CHAMPION).version == version.version
