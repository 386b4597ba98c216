"""The scale-out profile on real services: CeleryExecutor + Redis, PostgreSQL metadata and MLflow store, the
data root and MLflow artifacts on S3 and arrivals through SQS (a moto server), one Celery worker per queue (two on
`default`, one on `gpu`); all started by `retrain up` from the environment alone (RETRAIN_PROFILE=celery,
RETRAIN_DATA_ROOT=s3://…, RETRAIN_ARRIVALS=sqs).

Asserts what only a real deployment shows: an object put to the landing bucket becomes a champion through SQS,
ingest, training and promotion, with the MLflow artifacts in S3; which worker ran which task (queue and hostname
on the task instance); that a long image training holding the `gpu` pool does not delay the power workload; that image candidates are
judged where torch is (the `gpu` worker); and
that a worker killed mid-task costs a retry on another worker, not a candidate run left RUNNING forever.

Each run gets a PostgreSQL server of its own (initdb in a temp folder, so that a test can restart it; the
machine's shared server cannot be) with two databases (`retrain_it_<random>` for Airflow, `..._mlflow` for
MLflow), its own Redis key prefix, bucket and queue, all removed at the end; ports are free ones on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from retrain.stack import HEALTH_KEYS, AirflowApi, alive, kill_session

ROOT = Path(__file__).resolve().parents[2]
HOST, REDIS_PORT = "127.0.0.1", 6379
DAYS = 40


def _pg_bindir() -> Path | None:
    """Where PostgreSQL's server programs are (Debian keeps them out of PATH)."""
    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (bindir / "initdb").exists():
            return bindir
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def _missing() -> str | None:
    if not _reachable(REDIS_PORT):
        return f"Redis is not reachable on {HOST}:{REDIS_PORT}"
    if _pg_bindir() is None:
        return "PostgreSQL's server programs (initdb, pg_ctl) are not installed"
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


def _server_port() -> int:
    """A free port below the ephemeral range, for a server that goes away mid-test: while it is down, no
    outgoing connection can take its port (as one could an ephemeral one) and keep it from starting again."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for port in secrets.SystemRandom().sample(range(20000, max(20001, low)), 200):
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between 20000 and {low}")


class Cluster:
    """A PostgreSQL server of this test's own (initdb in a temp folder, a free port on 127.0.0.1), so that it can
    be restarted mid-run; the machine's shared server cannot be. Run as the ``postgres`` user when the tests run
    as root (PostgreSQL refuses root)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="retrain-pg-"))
        self.port = _server_port()
        self.data, self.log = self.root / "data", self.root / "server.log"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")

    def _run(self, program: str, *args: str) -> None:
        command = [str(_pg_bindir() / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        out = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{program} {' '.join(args)}: {out.stdout}{out.stderr}"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses={HOST} -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self, down_seconds: float) -> None:
        """What a real restart does to every client: connections cut, then refused for ``down_seconds``."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def sql(self, statement: str) -> list[tuple]:
        """Run one statement as the superuser, outside a transaction; its rows, if any."""
        import psycopg2

        connection = psycopg2.connect(host=HOST, port=self.port, user="postgres", dbname="postgres")
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def url(self, database: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"


@pytest.fixture(scope="module")
def cluster():
    server = Cluster()
    try:
        server.init()
        server.start()
        yield server
        server.stop()
    finally:
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="module")
def databases(cluster):
    """Two fresh PostgreSQL databases (Airflow, MLflow) on the module's own server."""
    name = f"retrain_it_{secrets.token_hex(4)}"
    for db in (name, f"{name}_mlflow"):
        cluster.sql(f"CREATE DATABASE {db}")
    return {"airflow": cluster.url(name), "mlflow": cluster.url(f"{name}_mlflow"), "name": name}


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
        d["datasets"]["mnist"]["loop"] |= {"epochs": 45, "patience": None, "batch_size": 32}

    def short_retries(d):
        d["defaults"] |= {"retry_delay_seconds": 2, "retry_exponential_backoff": False}

    edit("deployment.yaml", deployment)
    edit("image_dl_training.yaml", images)
    edit("tabular_ml_training.yaml", short_retries)
    return target


class Api(AirflowApi):
    logs: Path | None = None  # the stack's log folder, for what a failed wait reports

    def wait_for_runs(self, dag_id: str, count: int, timeout: float = 240) -> list[dict]:
        """Wait until ``count`` runs of a DAG have finished; returns all runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(dag_id)
            if len([r for r in runs if r["state"] in ("success", "failed")]) >= count:
                return runs
            time.sleep(2)
        raise AssertionError(f"{dag_id}: fewer than {count} finished runs after {timeout}s\n{self.diagnosis()}")

    def diagnosis(self) -> str:
        """What a failed wait needs to be understood after the stack is gone: every chain DAG's runs, the latest
        asset events, and the scheduler's and triggerer's last words about waiting events."""
        lines = []
        for dag_id in ("route_arrivals", "ingest_power", "tabular_ml_training", "image_dl_training", "promote_models"):
            for r in self.runs(dag_id):
                lines.append(f"run {dag_id} {r['dag_run_id']} {r['run_type']} {r['state']} "
                             f"queued={r.get('queued_at')} start={r.get('start_date')} end={r.get('end_date')}")
        try:
            for e in self.asset_events("order_by=-timestamp&limit=15"):
                lines.append(f"event {e['name']} from {e.get('source_dag_id')}/{e.get('source_run_id')} at {e['timestamp']}")
        except Exception as exc:  # the listing itself may be what fails (apache/airflow#71360)
            lines.append(f"asset events unavailable: {exc}")
        for name, pattern in (("scheduler", ("deferring", "exceeded", "ERROR", "error", "Traceback")),
                              ("triggerer", ("Received", "fired", "ERROR", "error", "Traceback"))):
            path = self.logs / f"{name}.log" if self.logs else None
            if path and path.exists():
                hits = [ln[:300] for ln in path.read_text(errors="replace").splitlines() if any(p in ln for p in pattern)]
                lines += [f"{name}.log: {ln}" for ln in hits[-15:]]
        return "\n".join(lines)

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, list[dict]]:
        tis = self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        by_task: dict[str, list[dict]] = {}
        for ti in tis:
            by_task.setdefault(ti["task_id"], []).append(ti)
        return by_task

    def events(self, asset_name: str) -> list[dict]:
        """Events of one asset, oldest first."""
        return [e for e in self.asset_events("order_by=timestamp&limit=200") if e["name"] == asset_name]


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def _running(tmp_path_factory, cluster, databases, config_dir):
    """The module's one stack: started by the first test (see ``stack``), stopped after the last, before its
    PostgreSQL server is."""
    holder: dict = {"start": lambda services: _start(tmp_path_factory, databases, config_dir, services) + (cluster,)}
    yield holder
    if "stop" in holder:
        holder["stop"]()


@pytest.fixture
def stack(_running, moto_services):
    """The running Celery stack on the first test's bucket and queue. ``moto_services`` is per test (a fresh
    bucket and queue each time); starting a stack per test would cost a minute each, so later tests reuse the
    first one's and leave theirs unused."""
    if "stack" not in _running:
        started, _running["stop"], cluster = _running["start"](moto_services)
        _running["stack"] = started | {"cluster": cluster}
    return _running["stack"]


def _start(tmp_path_factory, databases, config_dir, services):
    home = tmp_path_factory.mktemp("celery-home")
    prefix = f"{databases['name']}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "RETRAIN_", "AWS_"))}
    env |= dict(services) | {
        "RETRAIN_HOME": str(home), "RETRAIN_PROFILE": "celery", "RETRAIN_CONFIG_DIR": str(config_dir),
        "RETRAIN_DATABASE_URL": databases["airflow"], "RETRAIN_MLFLOW_DATABASE_URL": databases["mlflow"],
        "RETRAIN_BROKER_URL": f"redis://{HOST}:{REDIS_PORT}/0", "RETRAIN_BROKER_PREFIX": prefix,
        "RETRAIN_AIRFLOW_PORT": str(_free_port()), "RETRAIN_MLFLOW_PORT": str(_free_port()),
        # a killed worker's task is found after 20 s instead of 60
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        # the scheduler restarted after the PostgreSQL outage adopts the dead one's tasks after 15 s, not 60
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
    }
    retrain = [sys.executable, "-m", "retrain"]

    def stop():
        subprocess.run(retrain + ["down"], env=env, capture_output=True, timeout=120)
        _clear_broker(prefix)
        print(f"\ncelery stack logs: {home / 'logs'}")

    started_at = time.monotonic()
    try:
        started = subprocess.run(retrain + ["up"], env=env, capture_output=True, text=True, timeout=300)
        assert started.returncode == 0, started.stdout + started.stderr
        print(f"\ncelery stack up in {time.monotonic() - started_at:.0f}s")
        password = json.loads((home / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        api = Api(f"http://127.0.0.1:{env['RETRAIN_AIRFLOW_PORT']}", password)
        api.logs = home / "logs"
    except BaseException:
        stop()
        raise
    _confine_gpu_worker(home)
    host = socket.getfqdn()
    return {"home": home, "env": env, "api": api, "retrain": retrain, "services": services,
            "mlflow": f"http://127.0.0.1:{env['RETRAIN_MLFLOW_PORT']}",
            "workers": {"default": {f"default@{host}", f"default-2@{host}"}, "gpu": {f"gpu@{host}"}}}, stop


def _confine_gpu_worker(home: Path) -> None:
    """On this one host the `gpu` worker stands in for a GPU host of its own: give its session (and so every task
    process it forks, and torch's CPU threads there) the last core, leaving the others to the rest of the stack."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return
    from retrain.stack import session_members

    for pid in session_members(int((home / "run" / "worker-gpu.pid").read_text())):
        os.sched_setaffinity(pid, {cores[-1]})


def _clear_broker(prefix: str) -> None:
    import redis

    client = redis.Redis(host=HOST, port=REDIS_PORT, db=0)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def _land(stack, source: Path, dataset: str) -> None:
    out = subprocess.run(stack["retrain"] + ["land", dataset, str(source)], env=stack["env"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def _put_power(stack, seed: int) -> None:
    """A power file put straight into the landing bucket, as an upstream producer would."""
    from retrain.data.power import generate_power

    services = stack["services"]
    services.s3.put_object(Bucket=services.bucket, Key=f"data/landing/household_power/power-{seed}.txt",
                           Body=generate_power(DAYS * 1440, seed=seed))


def test_an_object_put_to_the_landing_bucket_is_ingested_trained_and_promoted(stack):
    """put_object → S3 notification → SQS → route_arrivals → ingest_power → tabular_ml_training →
    promote_models, every task on a `default` worker, the champion's artifacts in S3."""
    import mlflow

    api = stack["api"]
    _put_power(stack, 31)
    ingest_runs = api.wait_for_runs("ingest_power", 1)
    assert ingest_runs[0]["state"] == "success" and ingest_runs[0]["run_type"] == "asset_triggered", ingest_runs
    train_runs = api.wait_for_runs("tabular_ml_training", 1)
    assert train_runs[0]["state"] == "success" and train_runs[0]["run_type"] == "asset_triggered", train_runs
    promote_runs = api.wait_for_runs("promote_models", 1)
    assert promote_runs[0]["state"] == "success", promote_runs
    # the router's runs: on SQS batches (asset-triggered), and on its reconcile cron, which may also have run
    routed = [r for r in api.runs("route_arrivals") if r["run_type"] == "asset_triggered"]
    assert routed and {r["state"] for r in routed} == {"success"}, routed
    landing_events = api.events("landing.household_power")
    assert landing_events and landing_events[0]["source_dag_id"] == "route_arrivals", landing_events

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
    assert data_event["extra"]["uri"].startswith(f"s3://{stack['services'].bucket}/data/curated/")

    services = stack["services"]
    pages = services.s3.get_paginator("list_objects_v2").paginate(Bucket=services.bucket, Prefix="data/mlflow-artifacts/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert any(f"/{champion.run_id}/" in k and k.endswith("evaluation/test_features.parquet") for k in keys), keys[:20]
    assert any(k.endswith("MLmodel") for k in keys), keys[:20]


def test_a_long_image_training_on_the_gpu_worker_does_not_delay_power(stack, tmp_path):
    """MNIST trains on the `gpu` worker while it holds the one-slot `gpu` pool; a power drop landing meanwhile
    starts training on a `default` worker within 5 s of its event."""
    from retrain.data import mnist

    api = stack["api"]
    drop = tmp_path / "mnist-drop"
    drop.mkdir()
    # 6000 training images: long enough (3 epochs) that the power drop below is ingested and starts training
    # while this one still holds the gpu pool (with 300, the training once ended 1.5 s before power started)
    for name, data in mnist.generate_mnist(6000, 200, seed=4).items():
        (drop / name).write_bytes(data)
    _land(stack, drop, "mnist")

    deadline, training = time.monotonic() + 240, None
    while time.monotonic() < deadline and training is None:
        for run in api.runs("image_dl_training"):
            tis = api.task_instances("image_dl_training", run["dag_run_id"])
            if any(t["state"] == "running" for t in tis.get("pipeline.train", [])):
                training = run
        time.sleep(1)
    assert training, f"the MNIST training never started\n{api.diagnosis()}"
    gpu_pool = api.get("pools/gpu")
    assert gpu_pool["slots"] == 1 and gpu_pool["running_slots"] == 1, gpu_pool

    power_runs_before = len(api.runs("tabular_ml_training"))
    _put_power(stack, 32)
    runs = api.wait_for_runs("tabular_ml_training", power_runs_before + 1)
    power = runs[power_runs_before]
    assert power["state"] == "success", power
    event = api.events("household_power")[-1]
    power_tis = api.task_instances("tabular_ml_training", power["dag_run_id"])
    first_start = min(_ts(ti["start_date"]) for t in power_tis.values() for ti in t)
    delay = first_start - _ts(event["timestamp"])
    print(f"\npower training started {delay:.2f}s after its event, with the gpu pool saturated")
    # the 5 s target: 0.3-1.1 s measured here under load; the assertion is only "not held behind the image
    # training", which holds the gpu pool far longer than this bound, on a loaded 2-core CI box
    assert delay <= 30.0, f"power training started {delay:.1f}s after its event"
    assert {ti["hostname"] for t in power_tis.values() for ti in t} <= stack["workers"]["default"]

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        image_tis = api.task_instances("image_dl_training", training["dag_run_id"])
        if {t["state"] for t in image_tis["pipeline.evaluate"]} <= {"success", "failed", "upstream_failed"}:
            break
        time.sleep(2)
    assert {t["state"] for t in image_tis["pipeline.train"] + image_tis["pipeline.evaluate"]} == {"success"}, image_tis
    train = image_tis["pipeline.train"][0]
    assert _ts(train["end_date"]) > first_start, "the image training had ended before the power training started"
    for task_id in ("pipeline.train", "pipeline.evaluate"):
        assert {(ti["queue"], ti["pool"]) for ti in image_tis[task_id]} == {("gpu", "gpu")}
        assert {ti["hostname"] for ti in image_tis[task_id]} == stack["workers"]["gpu"]
    assert {ti["queue"] for ti in image_tis["pipeline.quality_gate"]} == {"default"}

    # scoring the CNN candidate loads torch: it is judged on the gpu worker, not on a CPU one
    deadline, judged = time.monotonic() + 240, []
    while time.monotonic() < deadline and not judged:
        for run in api.runs("promote_models"):
            tis = api.task_instances("promote_models", run["dag_run_id"])
            judged += [ti for ti in tis.get("judge_image", []) if ti["state"] == "success"]
        time.sleep(2)
    assert judged, f"the MNIST candidate was never judged\n{api.diagnosis()}"
    assert {(ti["queue"], ti["hostname"]) for ti in judged} <= {("gpu", h) for h in stack["workers"]["gpu"]}


def _pids(stack) -> dict[str, int]:
    return {path.stem: int(path.read_text()) for path in (stack["home"] / "run").glob("*.pid")}


def _restart_what_exited(stack, lost: str, back_at: float, within: float = 120) -> list[str]:
    """What the supervisors of the hosts still there do after a database outage: wait until each of the
    scheduler, triggerer and dag processor has either exited or heartbeated since the database came back
    (``back_at``, epoch seconds), then `retrain up` every component but the ``lost`` one (it starts what is not
    running and waits until those are healthy). The components whose process changed."""
    before = _pids(stack)
    deadline = time.monotonic() + within
    while True:
        try:
            health = stack["api"].get("monitor/health")
        except OSError:  # urllib's errors: the api-server's own connections may still be reconnecting
            health = {}
        undecided = [c for c, key in HEALTH_KEYS.items() if alive(before[c]) and not (
            (beat := (health.get(key) or {}).get(f"latest_{key}_heartbeat")) and _ts(beat) > back_at)]
        if not undecided:
            break
        assert time.monotonic() < deadline, f"{undecided} neither exited nor heartbeated after the outage: {health}"
        time.sleep(1)
    others = [c for c in before if c != lost]
    out = subprocess.run(stack["retrain"] + ["up", *others, "--timeout", "240"], env=stack["env"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{out.stdout}{out.stderr}\n{stack['api'].diagnosis()}"
    after = _pids(stack)
    return sorted(c for c in before if after.get(c) != before[c])


def test_a_worker_killed_mid_task_is_retried_on_the_other_worker(stack):
    """Kill the whole session of the worker logging a candidate (its MLflow run is open), then restart
    PostgreSQL (down for 5 s) while the scheduler should be noticing. Airflow's scheduler, triggerer and dag
    processor exit when their database goes away (by design: a supervisor restarts them); `retrain up`, run again
    as compose's `restart: unless-stopped` would, brings back what exited. Then the scheduler still finds the task
    without heartbeat, the retry runs on the other `default` worker, the crashed try's MLflow run is marked FAILED,
    the candidate is judged (no event lost), and the control plane reports healthy."""
    import mlflow

    api = stack["api"]
    client = mlflow.MlflowClient(stack["mlflow"])
    name = "tabular_ml_training.household_power"  # created by the first power training (maybe this test's)
    found = client.get_experiment_by_name(name)
    finished_before = {r.info.run_id for r in client.search_runs([found.experiment_id])} if found else set()
    runs_before = len(api.runs("tabular_ml_training"))
    _put_power(stack, 33)

    deadline, open_run = time.monotonic() + 240, None
    while time.monotonic() < deadline and open_run is None:
        found = found or client.get_experiment_by_name(name)
        running = [r for r in client.search_runs([found.experiment_id],
                                                 filter_string="attributes.status = 'RUNNING'")
                   if r.info.run_id not in finished_before] if found else []
        open_run = running[0] if running else None
        time.sleep(0.3)
    assert open_run, "no candidate run was ever RUNNING"
    experiment = found.experiment_id
    run_id = open_run.data.tags["airflow.run_id"]
    ti = api.task_instances("tabular_ml_training", run_id)["log_candidate"][0]
    worker = ti["hostname"].split("@")[0]
    pid = int((stack["home"] / "run" / f"worker-{worker}.pid").read_text())
    killed = kill_session(pid)
    assert killed, f"worker-{worker} had no processes"
    promotions_before = len(api.runs("promote_models"))
    stack["cluster"].restart(down_seconds=5)
    restarted = _restart_what_exited(stack, lost=f"worker-{worker}", back_at=time.time())
    print(f"\nrestarted after the PostgreSQL restart: {restarted}")

    # PostgreSQL down (5 s) + heartbeat timeout (20 s) + detection + retry delay (2 s) + the retry, on 2 cores
    runs = api.wait_for_runs("tabular_ml_training", runs_before + 1, timeout=480)
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

    candidate_events = [e for e in api.events("household_power_lgbm.candidate") if e["source_run_id"] == run_id]
    assert len(candidate_events) == 1
    api.wait_for_runs("promote_models", promotions_before + 1)
    judged = [r for r in api.runs("promote_models")
              if candidate_events[0]["id"] in {e["id"] for e in api.get(
                  f"dags/promote_models/dagRuns/{r['dag_run_id']}/upstreamAssetEvents")["asset_events"]}]
    assert [r["state"] for r in judged] == ["success"], judged
    health = api.get("monitor/health")
    assert {health[k]["status"] for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")} == {"healthy"}, health


def test_down_stops_every_worker_and_task_process(stack):
    out = subprocess.run(stack["retrain"] + ["down"], env=stack["env"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "worker-gpu" in out.stdout
    from retrain.stack import processes

    assert [proc.cmdline() for proc in processes(str(stack["home"]))] == []
