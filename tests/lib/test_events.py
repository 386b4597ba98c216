"""Events are types: built only through DataEvent, CandidateEvent and ChampionEvent, validated when read."""

from __future__ import annotations

import pytest


def test_events_are_validated_when_read_and_name_what_is_wrong():
    from retrain.errors import CandidateError, SnapshotError
    from retrain.events import CandidateEvent, ChampionEvent, DataEvent, check_data_event

    data = {"schema": 1, "dataset": "mnist", "uri": "file:///d/v", "version": "v1", "sha256": "ab", "rows": 3,
            "source_files": ["drop"], "drops": ["drop"]}
    assert check_data_event(data, "mnist") == data | {"partition": None}  # keys beyond the contract are kept
    with pytest.raises(SnapshotError, match="dataset: Field required"):
        check_data_event({k: v for k, v in data.items() if k != "dataset"}, "mnist")
    with pytest.raises(SnapshotError, match=r"schema: Input should be 1 \(observed 2\)"):
        DataEvent.read(data | {"schema": 2})
    with pytest.raises(SnapshotError, match="names dataset 'mnist'"):
        check_data_event(data, "cifar10")
    with pytest.raises(CandidateError, match="model_uri: Field required"):
        CandidateEvent.read({"schema": 1, "model": "mnist_cnn", "run_id": "r"})
    champion = ChampionEvent.of("mnist_cnn", 3, previous_champion=2, approved_by="ann").extra()
    assert champion == {"schema": 1, "model": "mnist_cnn", "version": "3", "model_uri": "models:/mnist_cnn/3",
                        "previous_champion": "2", "run_id": None, "metrics": {}, "approved_by": "ann"}
    assert ChampionEvent.read(champion).extra() == champion


def test_the_events_a_run_writes_are_the_typed_ones(retrain_home, tmp_path):
    from retrain import tracking
    from retrain.data.power import generate_power
    from retrain.events import CandidateEvent, DataEvent
    from retrain.ingest import landing, power

    source = tmp_path / "power.txt"
    source.write_bytes(generate_power(2 * 1440, seed=5))
    landing.land("household_power", str(source))
    extra = power.ingest_file("power.txt", "run").snapshot.event_extra()
    assert DataEvent.read(extra).extra() == extra and extra["schema"] == 1 and extra["dataset"] == "household_power"

    lineage = tracking.Lineage(dag_id="d", run_id="r", data=extra, quality={"verdict": "passed"})
    candidate = tracking.candidate_event_extra(
        model_name="household_power_lgbm", dataset="household_power", lineage=lineage, primary_metric="test_rmse",
        result={"run_id": "abc", "experiment_id": "1", "model_uri": "runs:/abc/model", "metrics": {"test_rmse": 1}},
        data_extra={"window_end": "2026-01-01"})
    assert CandidateEvent.read(candidate).extra() == candidate
    assert candidate["data"]["version"] == extra["version"] and candidate["data"]["window_end"] == "2026-01-01"
    assert candidate["metrics"] == {"test_rmse": 1.0} and candidate["schema"] == 1


def test_a_rollback_posts_a_typed_champion_event(monkeypatch):
    from types import SimpleNamespace

    from retrain import stack
    from retrain.events import ChampionEvent

    posted = []

    class Api:
        def listing(self, path, key):
            return [{"name": "household_power_lgbm.champion", "id": 7}]

        def request(self, method, path, body):
            posted.append((method, path, body))
            return body

    monkeypatch.setattr(stack, "AirflowApi", Api)
    move = SimpleNamespace(champion="1", previous_champion="2", entry={"action": "rollback", "by": "me", "reason": "x"})
    stack.emit_champion_event("household_power_lgbm", move)
    (method, path, body), = posted
    assert (method, path, body["asset_id"]) == ("POST", "assets/events", 7)
    event = ChampionEvent.read(body["extra"])
    assert (event.version, event.previous_champion, event.model_uri) == ("1", "2", "models:/household_power_lgbm/1")
    assert body["extra"]["action"] == "rollback" and body["extra"]["schema"] == 1
    assert (event.run_id, event.metrics) == (None, {})  # a rollback names no candidate run

    posted.clear()  # `retrain promote` names the promoted candidate's run and metrics, as the promotion DAG does
    stack.emit_champion_event("household_power_lgbm", move, run_id="r1", metrics={"test_rmse": 0.3})
    event = ChampionEvent.read(posted[0][2]["extra"])
    assert (event.run_id, event.metrics) == ("r1", {"test_rmse": 0.3})
