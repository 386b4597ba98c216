"""The freshness reconcile (design contract 8): data-time order, the decision to trigger, and the ledger."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from retrain import events, freshness, snapshots, tracking
from retrain.errors import ConfigError

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
RULES = freshness.Policy(bound_seconds=120, act_after_seconds=30)


@pytest.fixture(autouse=True)
def _no_candidate_sweep(request, monkeypatch):
    """The dataset tests count the reconcile's triggers: other tests' unjudged candidates in the session's MLflow
    are not theirs (the candidate sweep has its own test below)."""
    if "candidate" not in request.node.name:
        monkeypatch.setattr(freshness, "unjudged_candidates", lambda **_: [])


def _commit(version: str, start: str, end: str, dataset: str = "household_power"):
    def write(folder: str) -> list[dict]:
        with open(f"{folder}/part-0.txt", "w") as handle:
            handle.write(version)
        return [{"path": "part-0.txt", "sha256": version * 4, "bytes": 1, "rows": 1}]

    return snapshots.commit(dataset, version, write, rows=1, source_files=[{"name": f"{version}.txt"}],
                            extra={"time_range": [start, end]} if start else {})


def _snap(version: str, end: str, age_s: float, sequence: int = 0) -> freshness.Committed:
    manifest = {"version": version, "time_range": ["2026-01-01 00:00:00", end] if end else None,
                "sequence": sequence, "created_at": (NOW - timedelta(seconds=age_s)).isoformat()}
    return freshness.Committed.from_manifest("household_power", manifest)


def test_newer_means_later_in_the_data_not_later_emitted(retrain_home):
    """March data landed after June data: June is still the newest, and it supersedes March."""
    june = _commit("june", "2026-06-01 00:00:00", "2026-06-30 23:59:00")
    march = _commit("march", "2026-03-01 00:00:00", "2026-03-31 23:59:00")
    chosen, superseded = events.newest([june.event_extra(), march.event_extra()], "household_power")
    assert chosen["version"] == "june" and superseded == ["march"]
    chosen, superseded = events.newest([march.event_extra(), june.event_extra()], "household_power")
    assert chosen["version"] == "june" and superseded == ["march"]


def test_data_with_no_time_axis_is_ordered_by_commit():
    first = {"version": "zzz", "sequence": 1, "created_at": "2026-12-05T12:00:00+00:00"}
    second = {"version": "aaa", "sequence": 2, "created_at": "2026-12-05T12:00:00+00:00"}
    assert freshness.data_order(second) > freshness.data_order(first)
    assert freshness.data_order({"version": "p", "partition": "2026-03-04"}) > \
        freshness.data_order({"version": "q", "partition": "2026-03-03"})


def test_an_untrained_newest_snapshot_is_triggered_once_superseding_the_other_untrained():
    committed = [_snap("old", "2026-05-31", 900), _snap("lost", "2026-06-30", 200), _snap("newest", "2026-07-31", 90)]
    trained = freshness.Trained(runs={"old": "run-1"})
    state, actions = freshness.decide("household_power", committed, trained, {}, now=NOW, policy=RULES)
    assert [(a.kind, a.version, a.supersedes) for a in actions] == [("triggered", "newest", ("lost",))]
    assert state.newest_trained.version == "old" and state.lag_seconds == 90
    # the ledger entry the reconcile writes for it stops a second trigger
    ledger = {"newest": {"action": "triggered", "run_id": "freshness__household_power__newest"}}
    state, actions = freshness.decide("household_power", committed, trained, ledger, now=NOW, policy=RULES,
                                      holders={"newest": "tabular_ml_training run freshness__household_power__newest"})
    assert actions == [] and "freshness__household_power__newest" in state.note


def test_the_event_path_gets_its_turn_and_only_a_run_holding_the_snapshot_is_waited_for():
    committed = [_snap("older", "2026-06-30", 90), _snap("newest", "2026-07-31", 60)]
    young = [_snap("newest", "2026-07-31", 10)]
    _, actions = freshness.decide("household_power", young, freshness.Trained(), {}, now=NOW, policy=RULES)
    assert actions == []  # too young: its event's run may still come
    # a run training the older snapshot (or another dataset) does not hold the newest back
    _, actions = freshness.decide("household_power", committed, freshness.Trained(), {}, now=NOW, policy=RULES,
                                  holders={"older": "tabular_ml_training run a"})
    assert [(a.kind, a.version) for a in actions] == [("triggered", "newest")]
    state, actions = freshness.decide("household_power", committed, freshness.Trained(), {}, now=NOW, policy=RULES,
                                      holders={"newest": "tabular_ml_training run b"})
    assert actions == [] and state.note == "being trained by tabular_ml_training run b"


def test_a_triggered_run_that_ended_without_training_is_triggered_again_a_bounded_number_of_times():
    committed = [_snap("newest", "2026-07-31", 300)]
    entry = {"action": "triggered", "run_id": "freshness__household_power__newest", "attempts": 1}
    _, actions = freshness.decide("household_power", committed, freshness.Trained(), {"newest": entry}, now=NOW,
                                  policy=RULES)
    assert [(a.kind, a.version) for a in actions] == [("triggered", "newest")]
    assert "ended without training it" in actions[0].reason
    spent = entry | {"attempts": freshness.MAX_TRIGGERS}
    state, actions = freshness.decide("household_power", committed, freshness.Trained(), {"newest": spent}, now=NOW,
                                      policy=RULES)
    assert actions == [] and state.row(120)["state"].startswith("LATE")


def test_trained_or_recorded_as_superseded_is_fresh_and_costs_nothing():
    committed = [_snap("march", "2026-03-31", 30), _snap("june", "2026-06-30", 600)]
    trained = freshness.Trained(runs={"june": "run-2"}, superseded=frozenset({"march"}))
    state, actions = freshness.decide("household_power", committed, trained, {}, now=NOW, policy=RULES)
    assert actions == [] and state.lag_seconds == 0 and state.newest.version == "june"
    assert state.row(120)["state"] == "fresh"


def test_a_snapshot_landing_after_a_newer_one_was_trained_is_recorded_superseded_without_training():
    committed = [_snap("june", "2026-06-30", 600), _snap("march", "2026-03-31", 45)]
    trained = freshness.Trained(runs={"june": "run-2"})
    _, actions = freshness.decide("household_power", committed, trained, {}, now=NOW, policy=RULES)
    assert [(a.kind, a.version) for a in actions] == [("superseded", "march")] and "run-2" in actions[0].by


def test_a_rejected_snapshot_is_never_asked_for_and_the_one_before_it_is():
    committed = [_snap("good", "2026-06-30", 300), _snap("bad", "2026-07-31", 200)]
    ledger = {"bad": {"action": "rejected"}}
    _, actions = freshness.decide("household_power", committed, freshness.Trained(), ledger, now=NOW,
                                  policy=RULES)
    assert [(a.kind, a.version) for a in actions] == [("triggered", "good")]


def test_a_late_snapshot_shows_its_lag_in_status():
    state, _ = freshness.decide("household_power", [_snap("x", "2026-07-31", 300)], freshness.Trained(),
                                {"x": {"action": "triggered", "run_id": "r"}}, now=NOW, policy=RULES,
                                holders={"x": "tabular_ml_training run r"})
    row = state.row(120)
    assert row["lag_s"] == 300 and row["state"].startswith("LATE")


def test_reconcile_writes_the_ledger_and_never_triggers_a_version_twice(retrain_home, monkeypatch, caplog):
    _commit("june", "2026-06-01 00:00:00", "2026-06-30 23:59:00")
    _commit("march", "2026-03-01 00:00:00", "2026-03-31 23:59:00")
    monkeypatch.setattr(freshness, "datasets", lambda: ["household_power"])
    monkeypatch.setattr(freshness, "trained", lambda workload, dataset: freshness.Trained())
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    with caplog.at_level("WARNING", logger="retrain.freshness"):
        triggers = freshness.reconcile(lambda dag_id, run_id: False, now=later)
    assert [t.as_kwargs() for t in triggers] == [{
        "trigger_dag_id": "tabular_ml_training", "trigger_run_id": "freshness__household_power__june",
        "conf": {"dataset": "household_power", "version": "june", "supersedes": ["march"]},
        "note": triggers[0].note}]
    assert "reconcile: household_power snapshot june" in caplog.text and "triggered tabular_ml_training" in caplog.text
    entry = json.loads((retrain_home / "data" / "work" / "freshness" / "household_power" / "june.json").read_text())
    assert entry["action"] == "triggered" and entry["run_id"] == "freshness__household_power__june"
    # the triggered run is queued: the ledger holds the snapshot; once that run ended without training it, again
    assert freshness.reconcile(lambda dag_id, run_id: True, now=later) == []
    again = freshness.reconcile(lambda dag_id, run_id: False, now=later)
    assert [t.run_id for t in again] == ["freshness__household_power__june__2"]
    rows = freshness.report(now=later)
    assert rows[0]["newest"] == "june" and rows[0]["newest_trained"] == "-" and rows[0]["lag_s"] > 0


def test_a_run_records_the_versions_it_supersedes():
    lineage = tracking.Lineage(dag_id="d", run_id="r", data={"version": "june", "superseded_versions": ["march", "may"]})
    assert lineage.tags()["data.superseded"] == "march,may"


def test_the_reconcile_must_leave_time_to_train(edit_config):
    from retrain import config

    edit_config("reconcile", lambda raw: raw["freshness"].update(bound_seconds=60, act_after_seconds=40))
    with pytest.raises(ConfigError, match="must stay below bound_seconds"):
        config.load("reconcile")


ACTIVE = {("tabular_ml_training", "event-run")}


def _active(dag_id: str, run_id: str) -> bool:
    return (dag_id, run_id) in ACTIVE


def test_a_snapshot_is_claimed_by_one_run_at_a_time(retrain_home):
    claim = lambda run_id, **kw: freshness.claim("household_power", "june", dag_id="tabular_ml_training",  # noqa: E731
                                                 run_id=run_id, active=_active, **kw)
    assert claim("event-run")[0]
    assert claim("event-run")[0]  # a retried task finds its own claim
    granted, reason = claim("freshness__household_power__june")
    assert not granted and "being trained by tabular_ml_training run event-run" in reason
    # another dataset's claims are its own
    assert freshness.claim("mnist", "june", dag_id="image_dl_training", run_id="x", active=_active)[0]
    assert freshness.read_claim("household_power", "june")["run_id"] == "event-run"


def test_a_claim_whose_run_ended_without_training_is_taken_over_and_a_trained_one_is_not(retrain_home):
    assert freshness.claim("household_power", "june", dag_id="tabular_ml_training", run_id="killed",
                           active=_active)[0]
    granted, reason = freshness.claim("household_power", "june", dag_id="tabular_ml_training", run_id="next",
                                      active=_active, trained_runs=lambda: {})
    assert granted and "took over the claim of tabular_ml_training run killed" in reason
    granted, reason = freshness.claim("household_power", "june", dag_id="tabular_ml_training", run_id="late",
                                      active=_active, trained_runs=lambda: {"june": "mlflow-1"})
    assert not granted and "trained already" in reason and "mlflow-1" in reason


def test_a_run_gives_way_to_an_active_run_on_a_newer_snapshot_unless_a_person_asked(retrain_home):
    _commit("march", "2026-03-01 00:00:00", "2026-03-31 23:59:00")
    _commit("june", "2026-06-01 00:00:00", "2026-06-30 23:59:00")
    assert freshness.newer_versions("household_power", "march") == ["june"]
    assert freshness.claim("household_power", "june", dag_id="tabular_ml_training", run_id="event-run",
                           active=_active)[0]
    granted, reason = freshness.claim("household_power", "march", dag_id="tabular_ml_training", run_id="other",
                                      active=_active, newer=["june"])
    assert not granted and "newer snapshot june" in reason
    assert freshness.claim("household_power", "march", dag_id="tabular_ml_training", run_id="manual",
                           active=_active, newer=["june"], force=True)[0]


def test_the_reconcile_waits_only_for_a_run_that_holds_the_newest_snapshot(retrain_home, monkeypatch):
    _commit("june", "2026-06-01 00:00:00", "2026-06-30 23:59:00")
    monkeypatch.setattr(freshness, "datasets", lambda: ["household_power"])
    monkeypatch.setattr(freshness, "trained", lambda workload, dataset: freshness.Trained())
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    freshness.claim("household_power", "june", dag_id="tabular_ml_training", run_id="event-run", active=_active)
    assert freshness.reconcile(_active, now=later) == []
    assert "being trained by tabular_ml_training run event-run" in freshness.report(now=later)[0]["state"]
    # the claimant was killed: its claim counts as absent
    triggers = freshness.reconcile(lambda d, r: False, now=later)
    assert [t.run_id for t in triggers] == ["freshness__household_power__june"]


def test_a_cifar10_run_in_flight_does_not_delay_mnist(retrain_home, monkeypatch):
    _commit("m1", "", "", dataset="mnist")  # image drops have no time axis
    _commit("c1", "", "", dataset="cifar10")
    monkeypatch.setattr(freshness, "datasets", lambda: ["mnist", "cifar10"])
    monkeypatch.setattr(freshness, "trained", lambda workload, dataset: freshness.Trained())
    freshness.claim("cifar10", "c1", dag_id="image_dl_training", run_id="long-cifar10", active=lambda d, r: True)
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    triggers = freshness.reconcile(lambda dag_id, run_id: run_id == "long-cifar10", now=later)
    assert [(t.dag_id, t.run_id, t.conf["dataset"]) for t in triggers] == [
        ("image_dl_training", "freshness__mnist__m1", "mnist")]


def test_a_candidate_no_promotion_judged_gets_one_promotion_run(retrain_home):
    """A candidate event attached to no run leaves a trained model unjudged: the reconcile asks one promotion
    run for it (once), and leaves judged, unpublished ad-hoc and still-young candidates alone."""
    import mlflow

    client = tracking.client()
    name = tracking.experiment_name("tabular_ml_training", "household_power")
    experiment = client.get_experiment_by_name(name) or client.get_experiment(client.create_experiment(name))

    def candidate(**tags) -> str:
        with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
            event = {"schema": 1, "model": "household_power_lgbm", "dataset": "household_power",
                     "run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                     "model_uri": f"runs:/{run.info.run_id}/model", "metrics": {}, "primary_metric": "test_rmse",
                     "data": {}, "quality_verdict": "passed"}
            mlflow.set_tags({"retrain.candidate_event": json.dumps(event), **tags})
        return run.info.run_id

    unjudged = candidate()
    judged = candidate(**{"promotion.decision": "rejected"})
    private = candidate(**{"retrain.trigger": "adhoc", "retrain.adhoc.published": "false"})
    later = datetime.now(timezone.utc) + timedelta(seconds=5)

    assert [t.run_id for t in freshness.unjudged_candidates(now=later, older_than_s=60)
            if unjudged in t.run_id] == []  # too young: its own promotion run comes first
    triggers = {t.conf["candidate_run_id"]: t for t in freshness.unjudged_candidates(now=later, older_than_s=0)}
    assert unjudged in triggers and judged not in triggers and private not in triggers
    assert triggers[unjudged].dag_id == "promote_models"
    assert triggers[unjudged].run_id == f"freshness__promote__{unjudged}"
    assert unjudged not in {t.conf["candidate_run_id"] for t in freshness.unjudged_candidates(now=later, older_than_s=0)}
