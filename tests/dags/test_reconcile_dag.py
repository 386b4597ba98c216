"""reconcile_freshness in-process: an untrained snapshot gets exactly one training run, however often it runs."""

from __future__ import annotations

import json

import pytest

from retrain import freshness, snapshots, storage


@pytest.fixture(scope="module")
def dags(airflow_db):
    from inprocess import load_dags

    return load_dags()


def _lost_snapshot(version: str) -> snapshots.Snapshot:
    """A committed power snapshot whose event became no run, committed 10 minutes ago."""
    def write(folder: str) -> list[dict]:
        storage.write_text(storage.join(folder, "part-0.txt"), version)
        return [{"path": "part-0.txt", "sha256": storage.sha256(storage.join(folder, "part-0.txt")), "bytes": 1,
                 "rows": 1}]

    snap = snapshots.commit("household_power", version, write, rows=1, source_files=[{"name": "lost.txt"}],
                            extra={"time_range": ["2031-01-01 00:00:00", "2031-01-31 23:59:00"]})
    manifest = snap.manifest | {"created_at": "2026-01-01T00:00:00+00:00"}
    storage.write_text(snap.file(snapshots.MANIFEST), json.dumps(manifest, indent=2, sort_keys=True))
    return snap


def _runs(dag_id: str) -> list:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == dag_id).all()
        session.expunge_all()
        return runs


@pytest.fixture
def no_queued_run_left():
    """The triggered run stays queued (no scheduler here): delete it so no later test meets it."""
    yield
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for run in session.query(DagRun).filter(DagRun.run_id.like("freshness__%")).all():
            session.delete(run)


def test_an_untrained_snapshot_is_triggered_once(dags, monkeypatch, no_queued_run_left):
    from inprocess import task_states

    monkeypatch.setattr(freshness, "datasets", lambda: ["household_power"])
    monkeypatch.setattr(freshness, "unjudged_candidates", lambda **_: [])  # other tests' candidates: not this test's
    snap = _lost_snapshot("f0f0f0f0f0f0f0f0")
    before = {r.run_id for r in _runs("tabular_ml_training")}

    first = dags.get_dag("reconcile_freshness").test()
    assert str(first.state) == "success", task_states(first)
    assert task_states(first)["trigger[0]"] == "success"
    added = [r for r in _runs("tabular_ml_training") if r.run_id not in before]
    assert [r.run_id for r in added] == [freshness.run_id_for("household_power", snap.version)]
    assert added[0].conf["version"] == snap.version and str(added[0].state) == "queued"

    second = dags.get_dag("reconcile_freshness").test()  # the ledger holds it: nothing to trigger
    assert str(second.state) == "success", task_states(second)
    assert [r.run_id for r in _runs("tabular_ml_training") if r.run_id not in before] == [added[0].run_id]
    assert freshness.ledger("household_power")[snap.version]["action"] == "triggered"


def test_a_training_run_trains_only_the_image_snapshots_no_other_run_holds(monkeypatch):
    """The claim glue of the resolve task: a cifar10 snapshot held by a running run leaves mnist to this run,
    and a run left with nothing to train is skipped (the snapshot trains once)."""
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowSkipException

    from retrain import events
    from retrain.airflow import claims

    monkeypatch.setattr(events, "snapshot_order", lambda extra: 0)  # instead of reading the manifests

    def event(dataset: str, version: str) -> SimpleNamespace:
        extra = {"schema": 1, "dataset": dataset, "version": version, "sha256": "0",
                 "uri": f"file:///x/version={version}", "rows": 1, "source_files": []}
        return SimpleNamespace(timestamp=1, extra=extra)

    class Triggering(dict):
        def __getitem__(self, asset):
            return dict.__getitem__(self, asset.name)

    running = "asset_triggered__long_cifar10"
    freshness.claim("cifar10", "c-held", dag_id="image_dl_training", run_id=running, active=lambda d, r: True)
    ti = SimpleNamespace(dag_id="image_dl_training", run_id="asset_triggered__next",
                         get_dr_count=lambda dag_id, run_ids, states: int(run_ids == [running]))
    context = {"ti": ti, "dag_run": SimpleNamespace(run_type="asset_triggered"),
               "triggering_asset_events": Triggering(mnist=[event("mnist", "m-free")],
                                                     cifar10=[event("cifar10", "c-held")])}
    assert [e["version"] for e in claims.image_snapshots_to_train(context, ("mnist", "cifar10"))] == ["m-free"]
    assert freshness.read_claim("mnist", "m-free")["run_id"] == "asset_triggered__next"

    context["triggering_asset_events"] = Triggering(cifar10=[event("cifar10", "c-held")])
    with pytest.raises(AirflowSkipException, match="trained or being trained by another run"):
        claims.image_snapshots_to_train(context, ("mnist", "cifar10"))
