"""promote_models in-process: a first candidate becomes champion, a second that is not better is rejected."""

from __future__ import annotations

import pytest


DAYS = 40


@pytest.fixture(scope="module")
def dags(airflow_db):
    from inprocess import load_dags

    return load_dags()


def _train_on(dags, tmp_path, name: str, seed: int) -> dict:
    from retrain.data.power import generate_power
    from inprocess import asset_events
    from retrain.ingest import landing

    source = tmp_path / name
    source.write_bytes(generate_power(DAYS * 1440, seed=seed))
    landing.land("household_power", str(source))
    assert str(dags.get_dag("ingest_power").test().state) == "success"
    assert str(dags.get_dag("tabular_ml_training").test().state) == "success"
    return asset_events("household_power_lgbm.candidate")[-1]["extra"]


def _promote(dags):
    from inprocess import task_states

    run = dags.get_dag("promote_models").test()
    assert str(run.state) == "success", task_states(run)
    ti = next(t for t in run.get_task_instances() if t.task_id == "judge")
    return run, ti.xcom_pull(task_ids="judge", map_indexes=0)


@pytest.fixture(scope="module")
def registry_state(dags, tmp_path_factory):
    from inprocess import asset_events

    tmp = tmp_path_factory.mktemp("promotion")
    first = _train_on(dags, tmp, "first.txt", seed=21)
    first_run, first_decision = _promote(dags)
    champions_after_first = asset_events("household_power_lgbm.champion")
    second = _train_on(dags, tmp, "second.txt", seed=22)
    second_run, second_decision = _promote(dags)
    return {"first": first, "second": second, "first_decision": first_decision, "second_decision": second_decision,
            "champion_events_after_first": champions_after_first,
            "champion_events_after_second": asset_events("household_power_lgbm.champion")}


def test_first_candidate_becomes_champion(registry_state):
    from retrain import registry, tracking

    decision = registry_state["first_decision"]
    assert decision["outcome"] == "first_model", decision
    champion = registry.alias_version("household_power_lgbm", registry.CHAMPION)
    assert champion.version == decision["version"]
    assert champion.tags["decision"] == "first_model"
    assert champion.tags["candidate_run_id"] == registry_state["first"]["run_id"]
    assert champion.tags["data.sha256"] == registry_state["first"]["data"]["sha256"]
    assert champion.tags["quality.verdict"] == "passed"
    version = tracking.client().get_model_version("household_power_lgbm", champion.version)
    assert "beats the naive baseline" in version.description
    events = registry_state["champion_events_after_first"]
    assert len(events) == 1 and events[0]["extra"]["version"] == champion.version
    assert registry.history("household_power_lgbm")[0]["action"] == "promote"


def test_second_candidate_not_better_is_rejected_and_nothing_moves(registry_state):
    from retrain import registry, tracking

    decision = registry_state["second_decision"]
    assert decision["outcome"] == "rejected", decision
    comparison = decision["comparison"]
    assert comparison["n"] >= 48 and comparison["metric"] == "test_rmse"
    champion = registry.alias_version("household_power_lgbm", registry.CHAMPION)
    assert champion.version == registry_state["first_decision"]["version"]
    assert len(tracking.client().search_model_versions("name='household_power_lgbm'")) == 1
    assert len(registry_state["champion_events_after_second"]) == len(registry_state["champion_events_after_first"])
    run = tracking.client().get_run(registry_state["second"]["run_id"])
    assert run.data.tags["promotion.decision"] == "rejected"
    artifacts = {a.path for a in tracking.client().list_artifacts(run.info.run_id, "promotion")}
    assert {"promotion/comparison.md", "promotion/comparison.json", "promotion/comparison.png"} <= artifacts


def test_judging_the_same_candidate_again_changes_nothing(registry_state, dags):
    from retrain import tracking

    before = len(tracking.client().search_model_versions("name='household_power_lgbm'"))
    _, again = _promote(dags)  # the latest candidate event again
    assert again.get("repeated") is True
    assert len(tracking.client().search_model_versions("name='household_power_lgbm'")) == before


def test_rollback_and_history(registry_state, capsys):
    """A manual promotion of the second candidate, then `retrain rollback` (not a toggle) and `retrain history`."""
    import json

    from retrain import registry
    from retrain.cli import main

    model = "household_power_lgbm"
    first_version = registry_state["first_decision"]["version"]
    second = registry_state["second"]
    version = registry.register(model, second["model_uri"], second["run_id"], {"decision": "manual"}, "manual")
    registry.move_champion(model, version.version, expected_champion=first_version, action="promote",
                           by="test", reason="manual promotion")
    with pytest.raises(registry.ChampionChanged):  # compare-and-set refuses a stale expectation
        registry.move_champion(model, first_version, expected_champion=first_version, action="promote",
                               by="test", reason="stale")

    capsys.readouterr()
    assert main(["rollback", model, "--reason", "wrong", "--expect", first_version]) == 2  # not the champion
    assert "compared against version" in capsys.readouterr().err
    assert registry.alias_version(model, registry.CHAMPION).version == version.version

    assert main(["rollback", model, "--reason", "bad predictions in prod", "--by", "alice",
                 "--expect", version.version]) == 0
    out = capsys.readouterr()
    assert f"champion is version {first_version} again" in out.out
    assert "event not emitted" in out.err  # no stack runs here: said in one line, the move stands
    assert registry.alias_version(model, registry.CHAMPION).version == first_version
    assert registry.alias_version(model, registry.PREVIOUS) is None
    assert json.loads(tracking_tags(model, version.version)["rolled_back"])["by"] == "alice"

    # a second rollback has nothing to go back to: refused in one line, nothing moves
    assert main(["rollback", model, "--reason", "again"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing to roll back to" in err and "alice" in err
    assert registry.alias_version(model, registry.CHAMPION).version == first_version

    assert main(["history", model, "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["action"] for e in entries] == ["promote", "promote", "rollback"]
    assert entries[-1]["by"] == "alice" and entries[-1]["reason"] == "bad predictions in prod"
    assert entries[-1]["champion"] == first_version and entries[-1]["previous_champion"] == version.version
    # the trail is a chain: each move starts from the champion the one before it left
    assert all(b["previous_champion"] == a["champion"] for a, b in zip(entries, entries[1:]))


def test_interrupted_rollback_is_completed_not_repeated(registry_state, monkeypatch):
    """A crash after the alias moved and before the audit entry: the next rollback completes that one."""
    from retrain import registry

    model = "household_power_lgbm"
    champion = registry.alias_version(model, registry.CHAMPION).version
    second = registry.version_for_run(model, registry_state["second"]["run_id"]).version
    registry.move_champion(model, second, expected_champion=champion, action="promote", by="test", reason="again")
    moves = len(registry.history(model))

    real_audit = registry._audit

    def crash(*args, **kwargs):
        raise ConnectionError("injected: MLflow went away after the alias move")

    monkeypatch.setattr(registry, "_audit", crash)
    with pytest.raises(ConnectionError):
        registry.rollback(model, by="dave", reason="crash test")
    assert registry.alias_version(model, registry.CHAMPION).version == champion  # moved, not yet audited
    monkeypatch.setattr(registry, "_audit", real_audit)

    move = registry.rollback(model, by="erin", reason="retry")
    assert move.repaired and move.champion == champion and move.previous_champion == second
    entries = registry.history(model)
    assert len(entries) == moves + 1 and entries[-1]["by"] == "dave"  # the interrupted one, audited once
    with pytest.raises(registry.NothingToRollBack):
        registry.rollback(model, by="erin", reason="and again")


def tracking_tags(model: str, version: str) -> dict:
    from retrain import tracking

    return tracking.client().get_model_version(model, version).tags


@pytest.mark.parametrize("case", ["missing_run", "sha_mismatch", "unloadable_model"])
def test_bad_candidate_events_are_refused(registry_state, case):
    from retrain.errors import SnapshotError
    from retrain.workloads import promote

    event = dict(registry_state["second"])
    event["data"] = dict(event["data"])
    if case == "missing_run":
        event["run_id"] = "0" * 32
        expected = promote.PromotionError
    elif case == "sha_mismatch":
        event["data"]["sha256"] = "f" * 64
        expected = SnapshotError
    else:
        event["model_uri"] = "models:/m-doesnotexist"
        expected = promote.PromotionError
    # a fresh, unjudged run is needed for the last two: clear the recorded decision on a copy of the check
    from retrain import tracking

    if case != "missing_run":
        tracking.client().delete_tag(event["run_id"], "promotion.decision")
    try:
        with pytest.raises(expected):
            promote.judge(event, {"dag_id": "test", "run_id": "bad-input"})
    finally:
        if case != "missing_run":
            tracking.client().set_tag(event["run_id"], "promotion.decision", "rejected")


def test_reviewer_answers_on_a_challenger(registry_state):
    """What the review ApprovalOperator's post_execute applies: rejection records who and why; approval
    moves champion (compare-and-set) and clears the challenger alias."""
    from retrain import registry, tracking
    from retrain.workloads import promote

    model = "household_power_lgbm"
    champion = registry.alias_version(model, registry.CHAMPION).version
    second = registry_state["second"]
    challenger = registry.version_for_run(model, second["run_id"])
    registry.set_alias(model, registry.CHALLENGER, challenger.version)

    rejected = promote.approve(model, challenger.version, approved=False, by="bob", comment="drift in March",
                               expected_champion=champion, run_id=second["run_id"])
    assert rejected["outcome"] == "rejected"
    tags = tracking.client().get_model_version(model, challenger.version).tags
    assert tags["approval.rejected_by"] == "bob" and tags["approval.reason"] == "drift in March"
    assert registry.alias_version(model, registry.CHALLENGER) is None
    assert registry.alias_version(model, registry.CHAMPION).version == champion

    registry.set_alias(model, registry.CHALLENGER, challenger.version)
    approved = promote.approve(model, challenger.version, approved=True, by="carol", comment="",
                               expected_champion=champion, run_id=second["run_id"])
    assert approved["outcome"] == "promoted" and approved["previous_champion"] == champion
    assert registry.alias_version(model, registry.CHAMPION).version == challenger.version
    assert registry.history(model)[-1]["by"] == "carol"


def test_champion_alias_of_a_deleted_version_counts_as_no_champion(registry_state):
    """Deleting the champion's version takes the alias with it: the next candidate is judged as a first model."""
    from retrain import registry, tracking

    model = "household_power_lgbm"
    champion = registry.alias_version(model, registry.CHAMPION)
    client = tracking.client()
    client.delete_model_version(model, champion.version)
    assert registry.alias_version(model, registry.CHAMPION) is None


def test_mlflow_unreachable_raises_for_a_retry_and_changes_nothing(registry_state, monkeypatch):
    from mlflow.exceptions import MlflowException

    from retrain import settings, tracking
    from retrain.workloads import promote

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    settings.reset_settings()
    tracking._configured.cache_clear()
    try:
        with pytest.raises((MlflowException, OSError)):  # not a PromotionError: Airflow retries it
            promote.judge(registry_state["second"], {"dag_id": "test", "run_id": "down"})
    finally:
        monkeypatch.undo()
        settings.reset_settings()
        tracking._configured.cache_clear()
