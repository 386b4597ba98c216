"""The scale-out profile on real services: CeleryExecutor + Redis, PostgreSQL metadata and MLflow store, one
Celery worker per queue (two on `default`, one on `gpu`), all started by `retrain up` with RETRAIN_PROFILE=celery.

Asserts what only a real deployment shows: which worker ran which task (queue and hostname on the task instance),
that a long image training holding the `gpu` pool does not delay the power workload, and that a worker killed
mid-task costs a retry on another worker, not a candidate run left RUNNING forever.

Each run gets fresh PostgreSQL databases (`retrain_it_<random>` for Airflow, `..._mlflow` for MLflow) and its
own Redis key prefix, all removed at the end; ports are free ones on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from retrain.stack import AirflowApi, kill_session

ROOT = Path(__file__).resolve().parents[2]
PG_HOST, PG_PORT, REDIS_PORT = "127.0.0.1", 5432, 6379
DAYS = 40


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection((PG_HOST, port), timeout=1):
            return True
    except OSError:
        return False


def _missing() -> str | None:
    for port, service in ((PG_PORT, "PostgreSQL"), (REDIS_PORT, "Redis")):
        if not _reachable(port):
            return f"{service} is not reachable on {PG_HOST}:{port}"
    try:
        import airflow.providers.celery  # noqa: F401
        import psycopg2  # noqa: F401
        import redis  # noqa: F401
    except ImportError as exc:
        return f"the scaleout dependency group is not installed ({exc})"
    return None


if reason := _missing():
    pytest.skip(reason, allow_module_level=True)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres(sql: str) -> None:
    import psycopg2

    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


@pytest.fixture(scope="module")
def databases():
    """Two fresh PostgreSQL databases (Airflow, MLflow), dropped at the end."""
    name = f"retrain_it_{secrets.token_hex(4)}"
    names = [name, f"{name}_mlflow"]
    for db in names:
        _postgres(f"CREATE DATABASE {db}")
    try:
        yield {"airflow": f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{names[0]}",
               "mlflow": f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{names[1]}", "name": name}
    finally:
        for db in names:
            _postgres(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory) -> Path:
    """The repo's configs, with what this test needs on one 2-core host: two `default` workers (one may be
    killed), a long MNIST training (no early stopping) and short retry delays."""
    target = tmp_path_factory.mktemp("configs")
    for path in (ROOT / "configs").glob("*.yaml"):
        shutil.copy(path, target / path.name)

    def edit(name, change):
        data = yaml.safe_load((target / name).read_text())
        change(data)
        (target / name).write_text(yaml.safe_dump(data, sort_keys=False))

    def deployment(d):
        d["workers"] = {"default": {"concurrency": 4, "replicas": 2}, "gpu": {"concurrency": 1}}

    def images(d):
        d["datasets"]["mnist"]["loop"] |= {"epochs": 12, "patience": None, "batch_size": 32}

    def short_retries(d):
        d["defaults"] |= {"retry_delay_seconds": 2, "retry_exponential_backoff": False}

    edit("deployment.yaml", deployment)
    edit("image_dl_training.yaml", images)
    edit("tabular_ml_training.yaml", short_retries)
    return target


class Api(AirflowApi):
    def wait_for_runs(self, dag_id: str, count: int, timeout: float = 240) -> list[dict]:
        """Wait until ``count`` runs of a DAG have finished; returns all runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(dag_id)
            if len([r for r in runs if r["state"] in ("success", "failed")]) >= count:
                return runs
            time.sleep(2)
        raise AssertionError(f"{dag_id}: fewer than {count} finished runs after {timeout}s: {self.runs(dag_id)}")

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, list[dict]]:
        tis = self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        by_task: dict[str, list[dict]] = {}
        for ti in tis:
            by_task.setdefault(ti["task_id"], []).append(ti)
        return by_task

    def events(self, asset_name: str) -> list[dict]:
        events = self.get("assets/events?order_by=timestamp&limit=200")["asset_events"]
        return [e for e in events if e["name"] == asset_name]


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, databases, config_dir):
    home = tmp_path_factory.mktemp("celery-home")
    prefix = f"{databases['name']}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "RETRAIN_"))}
    env |= {
        "RETRAIN_HOME": str(home), "RETRAIN_PROFILE": "celery", "RETRAIN_CONFIG_DIR": str(config_dir),
        "RETRAIN_DATABASE_URL": databases["airflow"], "RETRAIN_MLFLOW_DATABASE_URL": databases["mlflow"],
        "RETRAIN_BROKER_URL": f"redis://{PG_HOST}:{REDIS_PORT}/0", "RETRAIN_BROKER_PREFIX": prefix,
        "RETRAIN_AIRFLOW_PORT": str(_free_port()), "RETRAIN_MLFLOW_PORT": str(_free_port()),
        # a killed worker's task is found after 20 s instead of 60
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    }
    retrain = [sys.executable, "-m", "retrain"]
    started_at = time.monotonic()
    started = subprocess.run(retrain + ["up"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        print(f"\ncelery stack up in {time.monotonic() - started_at:.0f}s")
        password = json.loads((home / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        api = Api(f"http://127.0.0.1:{env['RETRAIN_AIRFLOW_PORT']}", password)
        host = socket.getfqdn()
        yield {"home": home, "env": env, "api": api, "retrain": retrain,
               "mlflow": f"http://127.0.0.1:{env['RETRAIN_MLFLOW_PORT']}",
               "workers": {"default": {f"default@{host}", f"default-2@{host}"}, "gpu": {f"gpu@{host}"}}}
    finally:
        subprocess.run(retrain + ["down"], env=env, capture_output=True, timeout=120)
        _clear_broker(prefix)
        print(f"celery stack logs: {home / 'logs'}")


def _clear_broker(prefix: str) -> None:
    import redis

    client = redis.Redis(host=PG_HOST, port=REDIS_PORT, db=0)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def _land(stack, source: Path, dataset: str) -> None:
    out = subprocess.run(stack["retrain"] + ["land", dataset, str(source)], env=stack["env"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def _land_power(stack, tmp_path: Path, seed: int) -> None:
    from retrain.data.power import generate_power

    source = tmp_path / f"power-{seed}.txt"
    source.write_bytes(generate_power(DAYS * 1440, seed=seed))
    _land(stack, source, "household_power")


def test_power_drop_trains_and_promotes_on_the_default_workers(stack, tmp_path):
    import mlflow

    api = stack["api"]
    _land_power(stack, tmp_path, 31)
    train_runs = api.wait_for_runs("tabular_ml_training", 1)
    assert train_runs[0]["state"] == "success" and train_runs[0]["run_type"] == "asset_triggered", train_runs
    promote_runs = api.wait_for_runs("promote_models", 1)
    assert promote_runs[0]["state"] == "success", promote_runs

    tis = api.task_instances("tabular_ml_training", train_runs[0]["dag_run_id"])
    assert {ti["queue"] for t in tis.values() for ti in t} == {"default"}
    assert {ti["hostname"] for t in tis.values() for ti in t} <= stack["workers"]["default"]

    client = mlflow.MlflowClient(stack["mlflow"])
    champion = client.get_model_version_by_alias("household_power_lgbm", "champion")
    data_event = api.events("household_power")[0]
    assert champion.tags["decision"] == "first_model"
    assert champion.tags["data.version"] == data_event["extra"]["version"]
    run = client.get_run(champion.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["airflow.dag_id"] == "tabular_ml_training"


def test_a_long_image_training_on_the_gpu_worker_does_not_delay_power(stack, tmp_path):
    """MNIST trains on the `gpu` worker while it holds the one-slot `gpu` pool; a power drop landing meanwhile
    starts training on a `default` worker within 5 s of its event."""
    from retrain.data import mnist

    api = stack["api"]
    drop = tmp_path / "mnist-drop"
    drop.mkdir()
    for name, data in mnist.generate_mnist(300, 200, seed=4).items():
        (drop / name).write_bytes(data)
    _land(stack, drop, "mnist")

    deadline, training = time.monotonic() + 240, None
    while time.monotonic() < deadline and training is None:
        for run in api.runs("image_dl_training"):
            tis = api.task_instances("image_dl_training", run["dag_run_id"])
            if any(t["state"] == "running" for t in tis.get("pipeline.train", [])):
                training = run
        time.sleep(1)
    assert training, "the MNIST training never started"
    gpu_pool = api.get("pools/gpu")
    assert gpu_pool["slots"] == 1 and gpu_pool["running_slots"] == 1, gpu_pool

    power_runs_before = len(api.runs("tabular_ml_training"))
    _land_power(stack, tmp_path, 32)
    runs = api.wait_for_runs("tabular_ml_training", power_runs_before + 1)
    power = runs[power_runs_before]
    assert power["state"] == "success", power
    event = api.events("household_power")[-1]
    power_tis = api.task_instances("tabular_ml_training", power["dag_run_id"])
    first_start = min(_ts(ti["start_date"]) for t in power_tis.values() for ti in t)
    delay = first_start - _ts(event["timestamp"])
    print(f"\npower training started {delay:.2f}s after its event, with the gpu pool saturated")
    assert delay <= 5.0, f"power training started {delay:.1f}s after its event"
    assert {ti["hostname"] for t in power_tis.values() for ti in t} <= stack["workers"]["default"]

    image_runs = api.wait_for_runs("image_dl_training", 1, timeout=300)
    assert image_runs[0]["state"] == "success", image_runs
    image_tis = api.task_instances("image_dl_training", training["dag_run_id"])
    train = image_tis["pipeline.train"][0]
    assert _ts(train["end_date"]) > first_start, "the image training had ended before the power training started"
    for task_id in ("pipeline.train", "pipeline.evaluate"):
        assert {(ti["queue"], ti["pool"]) for ti in image_tis[task_id]} == {("gpu", "gpu")}
        assert {ti["hostname"] for ti in image_tis[task_id]} == stack["workers"]["gpu"]
    assert {ti["queue"] for ti in image_tis["pipeline.quality_gate"]} == {"default"}


def test_a_worker_killed_mid_task_is_retried_on_the_other_worker(stack, tmp_path):
    """Kill the whole session of the worker logging a candidate (its MLflow run is open): the scheduler finds
    the task without heartbeat, the retry runs on the other `default` worker, the crashed try's MLflow run is
    marked FAILED, and the training still produces its candidate."""
    import mlflow

    api = stack["api"]
    client = mlflow.MlflowClient(stack["mlflow"])
    experiment = client.get_experiment_by_name("tabular_ml_training.household_power").experiment_id
    finished_before = {r.info.run_id for r in client.search_runs([experiment])}
    runs_before = len(api.runs("tabular_ml_training"))
    _land_power(stack, tmp_path, 33)

    deadline, open_run = time.monotonic() + 240, None
    while time.monotonic() < deadline and open_run is None:
        running = [r for r in client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'")
                   if r.info.run_id not in finished_before]
        open_run = running[0] if running else None
        time.sleep(0.3)
    assert open_run, "no candidate run was ever RUNNING"
    run_id = open_run.data.tags["airflow.run_id"]
    ti = api.task_instances("tabular_ml_training", run_id)["log_candidate"][0]
    worker = ti["hostname"].split("@")[0]
    pid = int((stack["home"] / "run" / f"worker-{worker}.pid").read_text())
    killed = kill_session(pid)
    assert killed, f"worker-{worker} had no processes"

    runs = api.wait_for_runs("tabular_ml_training", runs_before + 1, timeout=240)
    run = next(r for r in runs if r["dag_run_id"] == run_id)
    assert run["state"] == "success", run
    retried = api.task_instances("tabular_ml_training", run_id)["log_candidate"][0]
    assert retried["try_number"] == 2, retried
    assert retried["hostname"] != ti["hostname"] and retried["hostname"] in stack["workers"]["default"]
    assert client.get_run(open_run.info.run_id).info.status == "FAILED"
    still_running = client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'")
    assert still_running == []
    candidates = [r for r in client.search_runs([experiment], filter_string="attributes.status = 'FINISHED'")
                  if r.data.tags.get("airflow.run_id") == run_id]
    assert len(candidates) == 1


def test_down_stops_every_worker_and_task_process(stack):
    out = subprocess.run(stack["retrain"] + ["down"], env=stack["env"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "worker-gpu" in out.stdout
    import psutil

    home = str(stack["home"])
    leftovers = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            if (proc.info["environ"] or {}).get("RETRAIN_HOME") == home:
                leftovers.append(proc.info["cmdline"])
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
    assert leftovers == []
