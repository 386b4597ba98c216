"""Champion moves under real faults, against a real MLflow server: concurrent judges of one model, a judge
killed right after its alias move, the MLflow server stopped mid-promotion.

Candidates are real models (scikit-learn regressors logged with MLflow) of known quality: candidate k predicts
``signal + sigma_k * noise``, so a smaller ``sigma`` is better on every example and the promotion policy's
paired test tells them apart for certain. Judges run as separate processes released together, so they score
against the same champion and race for the move.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from retrain import promotion

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
MODEL = "household_power_lgbm"
N_EVAL = 240

JUDGE = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from retrain.workloads import promote
    event, run_id, go = json.loads(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    Path(f"{go}.ready.{os.getpid()}").touch()  # imported: waits at the line
    while not go.exists():  # released together with the other judges
        time.sleep(0.01)
    from retrain import registry
    real_lock = registry.champion_lock
    def champion_lock(name):  # says when this judge has scored and queues at the lock
        Path(f"{go}.at-lock.{os.getpid()}").touch()
        return real_lock(name)
    registry.champion_lock = champion_lock
    crash_after_move = os.environ.get("CRASH_AFTER_ALIAS_MOVE") == "1"
    if crash_after_move:  # the process dies for real right after the alias moved (no cleanup, no audit)
        from retrain import registry
        real = registry.set_alias
        def set_alias(name, alias, version):
            real(name, alias, version)
            if alias == registry.CHAMPION:
                os._exit(137)
        registry.set_alias = set_alias
    decision = promote.judge(event, {"dag_id": "promote_models", "run_id": run_id})
    print("DECISION " + json.dumps({k: decision.get(k) for k in ("outcome", "version", "compared_champion",
          "previous_champion", "champion_event", "repeated", "candidate_run_id")}))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real ``mlflow server`` process (SQLite backend, local artifacts), stoppable and restartable."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        mlflow = Path(sys.executable).with_name("mlflow")
        command = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                   "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
                   "--artifacts-destination", (self.folder / "artifacts").as_uri()]
        log = open(self.folder / "server.log", "ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"MLflow server did not start; see {self.folder / 'server.log'}")

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
            self.process = None


@pytest.fixture(scope="module")
def world(tmp_path_factory, mlflow_world):
    """RETRAIN_HOME, a real power snapshot and a real MLflow server, for this module's processes and children."""
    home = tmp_path_factory.mktemp("moves")
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    # a stopped server fails the judge at once, as Airflow sees it
    env = {"MLFLOW_TRACKING_URI": server.url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "RETRAIN_CONFIG_DIR": str(_pair_policies(tmp_path_factory.mktemp("configs")))}
    try:
        with mlflow_world(home, env) as data:
            promotion.load_policies.cache_clear()
            yield {"home": home, "server": server, "data": data}
    finally:
        promotion.load_policies.cache_clear()
        server.stop()


def _pair_policies(folder: Path) -> Path:
    """The repo's configs with the power policy's retraining spread at 0: these candidates are built models
    (``signal + sigma * noise``), not retrains of one recipe, so the pair comparison is the whole question and
    a small sigma step is a certain improvement; what this module tests is who moves the alias, not the test."""
    shutil.copytree(Path(__file__).resolve().parents[2] / "configs", folder, dirs_exist_ok=True)
    path = folder / "promotion.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["models"][MODEL]["training_sd"] = 0.0
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def _candidate(world, sigma: float) -> dict:
    """A FINISHED candidate run whose model predicts ``signal + sigma * noise`` (RMSE ~ sigma), as training logs it."""
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from retrain import tracking

    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"signal": rng.normal(2.0, 1.0, N_EVAL), "noise": rng.normal(0.0, 1.0, N_EVAL)})
    model = LinearRegression().fit(frame, frame["signal"] + sigma * frame["noise"])
    frame["target"] = frame["signal"]
    errors = sigma * frame["noise"].abs()
    experiment = tracking.client().get_experiment_by_name("faults") or tracking.client().get_experiment(
        tracking.client().create_experiment("faults"))
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
        folder = world["home"] / "eval" / run.info.run_id
        folder.mkdir(parents=True)
        frame.to_parquet(folder / "test_features.parquet")
        mlflow.log_artifact(str(folder / "test_features.parquet"), "evaluation")
        # the naive baseline per test example, as tabular training logs it (a poor one: RMSE ~ 50)
        naive = frame["signal"] + 50.0 * rng.normal(0.0, 1.0, N_EVAL)
        pd.DataFrame({"actual": frame["signal"], "seasonal_naive": naive}).to_parquet(folder / "test_predictions.parquet")
        mlflow.log_artifact(str(folder / "test_predictions.parquet"), "evaluation")
        mlflow.log_metrics({"test_rmse": float(np.sqrt((errors ** 2).mean())), "test_mae": float(errors.mean()),
                            "baseline_seasonal_naive_rmse": float(np.sqrt(((naive - frame["signal"]) ** 2).mean()))})
        mlflow.set_tag("quality.verdict", "passed")
    return {"schema": 1, "model": MODEL, "dataset": "household_power", "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id, "model_uri": info.model_uri, "data": world["data"],
            "metrics": {"test_rmse": float(np.sqrt((errors ** 2).mean()))}, "primary_metric": "test_rmse",
            "quality_verdict": "passed"}


def _judge_together(world, events: list[dict], tmp_path: Path, env: dict | None = None, *,
                    overlap: bool = False) -> list[dict]:
    """Judge ``events`` in as many processes, released at the same instant; returns their decisions.

    ``overlap`` forces the race: the test holds the model's registry lock (the real one) while the judges
    score, so all of them compare with the same champion and then queue at the lock together.
    """
    from retrain import registry

    go = tmp_path / f"go-{time.monotonic_ns()}"
    child_env = os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {})
    processes = [subprocess.Popen([sys.executable, "-c", JUDGE, json.dumps(e), f"race-{i}-{go.name}", str(go)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env)
                 for i, e in enumerate(events)]
    _wait_ready(go, len(processes))
    if overlap:
        with registry.champion_lock(MODEL):
            go.touch()
            # every judge has scored both models and queues at the lock (however long scoring takes: a fixed
            # wait let a slow judge reach the lock after the others had moved the champion, and no overlap)
            _wait_ready(go, len(processes), stage="at-lock", timeout=600)
            time.sleep(1)  # from its marker to its flock: a few lines
    go.touch()
    outputs = [p.communicate(timeout=600) for p in processes]
    decisions = []
    for process, (out, err) in zip(processes, outputs):
        line = next((l for l in out.splitlines() if l.startswith("DECISION ")), None)
        decisions.append({"returncode": process.returncode, "stderr": err,
                          **(json.loads(line[len("DECISION "):]) if line else {})})
    return decisions


def _wait_ready(go: Path, count: int, *, stage: str = "ready", timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(list(go.parent.glob(f"{go.name}.{stage}.*"))) < count:
        assert time.monotonic() < deadline, f"the judges did not reach {stage!r}"
        time.sleep(0.1)


def _assert_chain(decisions: list[dict]) -> list[dict]:
    """The audit trail is a chain, each promoted version was compared with the champion it replaced, and each
    candidate run has at most one version."""
    from retrain import registry, tracking

    entries = registry.history(MODEL)
    for before, after in zip(entries, entries[1:]):
        assert after["previous_champion"] == before["champion"], entries
    assert len({e["champion"] for e in entries}) == len(entries), f"a version was moved in twice: {entries}"
    client = tracking.client()
    for entry in entries:
        summary = json.loads(client.get_run(entry["candidate_run_id"]).data.tags["promotion.summary"])
        assert summary["compared_champion"] == entry["previous_champion"], (entry, summary)
    for d in decisions:
        versions = client.search_model_versions(f"name='{MODEL}' and run_id='{d['candidate_run_id']}'")
        assert len(versions) <= 1, versions
    return entries


def _double_champions(entries: list[dict]) -> int:
    """Moves that broke the chain: a move whose previous champion is not the one the move before it left."""
    return sum(after["previous_champion"] != before["champion"] for before, after in zip(entries, entries[1:]))


def test_concurrent_judges_move_the_champion_one_at_a_time(world, tmp_path, fault_scale, fault_report):
    """2, then N (default 4) candidates of one model judged at once, each better than the last champion."""
    from retrain import registry

    first = _candidate(world, 8.0)
    [decision] = _judge_together(world, [first], tmp_path)
    assert decision["returncode"] == 0, decision["stderr"][-3000:]
    assert decision["outcome"] == "first_model" and decision["champion_event"], decision

    sigmas = iter(4.0 * 0.8 ** i for i in range(100))
    for count in (2, fault_scale("candidates", 4)):
        moves_before = len(_assert_chain([]))
        events = [_candidate(world, next(sigmas)) for _ in range(count)]
        decisions = _judge_together(world, events, tmp_path, overlap=True)
        entries = registry.history(MODEL)
        promoted = [d for d in decisions if d.get("outcome") == "promoted"]
        fault_report(scenario=f"{count} candidates of one model judged at once", fault="overlap forced at the lock",
                     snapshots="-", trained_or_superseded="-", files_lost=0, double_champions=_double_champions(entries),
                     lost_champion_events=len(entries) - moves_before - sum(bool(d["champion_event"]) for d in promoted),
                     worst_lag_s="-")
        assert all(d["returncode"] == 0 for d in decisions), [d["stderr"][-2000:] for d in decisions]
        entries = _assert_chain(decisions)
        assert promoted, decisions
        assert len(entries) - moves_before == len(promoted)  # one audit entry per move, no more
        assert all(d["champion_event"] for d in promoted) and not any(
            d["champion_event"] for d in decisions if d["outcome"] != "promoted")
        # the overlap was real: at least one judge found the champion moved under it and judged again
        assert any("judging again" in d["stderr"] for d in decisions), [d["stderr"][-500:] for d in decisions]


def test_a_judge_killed_right_after_the_alias_move_is_completed_by_its_retry(world, tmp_path, fault_report):
    from retrain import registry

    event = _candidate(world, 0.1)
    moves_before = len(registry.history(MODEL))
    [crashed] = _judge_together(world, [event], tmp_path, env={"CRASH_AFTER_ALIAS_MOVE": "1"})
    assert crashed["returncode"] == 137 and "outcome" not in crashed
    assert registry.alias_version(MODEL, registry.CHAMPION).run_id == event["run_id"]
    assert len(registry.history(MODEL)) == moves_before  # the crash came before the audit entry

    # the retry (same Airflow run id as the crashed try) completes it: audit entry, decision, champion event
    go = tmp_path / "go-retry"
    go.touch()
    retry = subprocess.run([sys.executable, "-c", JUDGE, json.dumps(event), "retry-of-the-crashed-try", str(go)],
                           capture_output=True, text=True, timeout=600)
    assert retry.returncode == 0, retry.stderr[-3000:]
    decision = json.loads(next(l for l in retry.stdout.splitlines() if l.startswith("DECISION "))[9:])
    assert decision["outcome"] == "promoted" and decision["champion_event"], decision
    entries = _assert_chain([decision])
    assert len(entries) == moves_before + 1 and entries[-1]["repaired"] is True
    fault_report(scenario="judge killed right after the alias move, then retried", fault="os._exit after set_alias",
                 snapshots="-", trained_or_superseded="-", files_lost=0, double_champions=_double_champions(entries),
                 lost_champion_events=0 if decision["champion_event"] else 1, worst_lag_s="-")

    # a re-run of the finished promotion changes nothing and emits nothing
    again = subprocess.run([sys.executable, "-c", JUDGE, json.dumps(event), "another-run", str(go)],
                           capture_output=True, text=True, timeout=600)
    decision = json.loads(next(l for l in again.stdout.splitlines() if l.startswith("DECISION "))[9:])
    assert decision["repeated"] and not decision["champion_event"]
    assert len(registry.history(MODEL)) == moves_before + 1


def test_mlflow_server_stopped_mid_promotion_then_restarted(world, tmp_path, fault_report):
    """The server goes away while candidates are judged and comes back 60 s later: the retries complete the
    promotion with one version per candidate run and no half-registered version."""
    from retrain import registry, tracking

    events = [_candidate(world, s) for s in (0.05, 0.03)]
    go = tmp_path / "go-outage"
    processes = [subprocess.Popen([sys.executable, "-c", JUDGE, json.dumps(e), f"outage-{i}", str(go)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i, e in enumerate(events)]
    _wait_ready(go, len(processes))
    go.touch()
    time.sleep(1.5)  # the judges are loading models and scoring
    world["server"].stop()
    results = [p.communicate(timeout=300) for p in processes]
    failed = [p.returncode != 0 for p in processes]
    time.sleep(60 - 1.5)
    world["server"].start()

    decisions = []
    for i, e in enumerate(events):  # Airflow's retry of each try that failed (a finished one is a no-op)
        retry = subprocess.run([sys.executable, "-c", JUDGE, json.dumps(e), f"outage-{i}", str(go)],
                               capture_output=True, text=True, timeout=600)
        assert retry.returncode == 0, retry.stderr[-3000:]
        decisions.append(json.loads(next(l for l in retry.stdout.splitlines() if l.startswith("DECISION "))[9:]))
    entries = registry.history(MODEL)
    ids = {event["run_id"] for event in events}
    moves = [entry for entry in entries if entry.get("candidate_run_id") in ids]
    fault_report(scenario="MLflow server stopped while 2 candidates are judged, back 60 s later",
                 fault="mlflow server SIGTERM", snapshots="-", trained_or_superseded="-", files_lost=0,
                 double_champions=_double_champions(entries),
                 lost_champion_events=len(moves) - sum(bool(d["champion_event"]) for d in decisions), worst_lag_s="-")
    assert any(failed), "the outage did not hit any judge: " + repr([r[1][-500:] for r in results])
    _assert_chain(decisions)
    client = tracking.client()
    for version in client.search_model_versions(f"name='{MODEL}'"):
        assert version.status == "READY", version  # nothing half-registered
    champion = registry.alias_version(MODEL, registry.CHAMPION)
    assert champion.run_id in {e["run_id"] for e in events}


def test_an_approval_whose_champion_moved_meanwhile_expires_and_the_candidate_is_judged_again(world):
    """A challenger waits for a person; meanwhile another candidate becomes champion. Approving the stale
    challenger moves nothing: it expires with the reason recorded, and judging its event again compares it with
    the champion now in service (it is not stuck, and not moved over a champion it never saw)."""
    from retrain import registry, tracking
    from retrain.workloads import promote

    client = tracking.client()
    waiting, newer = _candidate(world, 0.02), _candidate(world, 0.01)
    champion = registry.alias_version(MODEL, registry.CHAMPION).version
    challenger = registry.register(MODEL, waiting["model_uri"], waiting["run_id"], {"decision": "awaiting_approval"},
                                   "awaiting approval")
    registry.set_alias(MODEL, registry.CHALLENGER, challenger.version)
    client.set_tag(waiting["run_id"], "promotion.decision", "awaiting_approval")
    client.set_tag(waiting["run_id"], "promotion.summary", json.dumps({"outcome": "awaiting_approval",
                                                                        "compared_champion": champion}))
    moved = promote.judge(newer, {"dag_id": "promote_models", "run_id": "meanwhile"})
    assert moved["outcome"] == "promoted"

    outcome = promote.approve(MODEL, challenger.version, approved=True, by="carol", comment="looks good",
                              expected_champion=champion, run_id=waiting["run_id"])
    assert outcome["outcome"] == "expired" and f"from version {champion} to {moved['version']}" in outcome["reason"]
    assert registry.alias_version(MODEL, registry.CHAMPION).version == moved["version"]
    assert registry.alias_version(MODEL, registry.CHALLENGER) is None
    assert "stale" in client.get_model_version(MODEL, challenger.version).tags["approval.expired"]

    again = promote.judge(waiting, {"dag_id": "promote_models", "run_id": "rejudge"})
    assert not again.get("repeated") and again["compared_champion"] == moved["version"]
    assert again["outcome"] == "rejected"  # worse than the champion that moved in meanwhile
    assert len(client.search_model_versions(f"name='{MODEL}' and run_id='{waiting['run_id']}'")) == 1


def test_concurrent_judges_in_the_celery_profile_serialise_on_the_postgresql_lock(world, tmp_path, monkeypatch,
                                                                                  postgres_url, fault_report):
    """The Celery profile's lock is a PostgreSQL advisory lock: judges that share nothing but the database (as
    workers on several hosts do) and this test, holding the model's lock through PostgreSQL, force the race."""
    from retrain import registry

    celery = {"RETRAIN_PROFILE": "celery", "RETRAIN_DATABASE_URL": postgres_url}
    for key, value in celery.items():
        monkeypatch.setenv(key, value)
    if not registry.history(MODEL):
        [first] = _judge_together(world, [_candidate(world, 8.0)], tmp_path, celery)
        assert first["returncode"] == 0, first["stderr"][-3000:]
    moves_before = len(_assert_chain([]))
    events = [_candidate(world, 0.005 * 0.8 ** i) for i in range(3)]  # better than any champion before
    decisions = _judge_together(world, events, tmp_path, celery, overlap=True)
    entries = registry.history(MODEL)
    promoted = [d for d in decisions if d.get("outcome") == "promoted"]
    fault_report(scenario="3 candidates judged at once, Celery profile (PostgreSQL advisory lock)",
                 fault="overlap forced at the lock", snapshots="-", trained_or_superseded="-", files_lost=0,
                 double_champions=_double_champions(entries),
                 lost_champion_events=len(entries) - moves_before - sum(bool(d["champion_event"]) for d in promoted),
                 worst_lag_s="-")
    assert all(d["returncode"] == 0 for d in decisions), [d["stderr"][-2000:] for d in decisions]
    entries = _assert_chain(decisions)
    assert promoted and len(entries) - moves_before == len(promoted)
    # the judges waited at the lock this process held through PostgreSQL, and judged again after it
    assert any("judging again" in d["stderr"] for d in decisions), [d["stderr"][-500:] for d in decisions]
