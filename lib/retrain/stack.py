"""The embedded stack under ``RETRAIN_HOME``: set-up, then ``up`` / ``down`` / ``status`` of its processes.

Each component (MLflow server, Airflow api-server, scheduler, dag-processor, triggerer) runs in its own
process session, so ``down`` can stop it and every child it forked (``airflow standalone`` leaves orphans on
SIGTERM). Services bind to 127.0.0.1; logs go to ``$RETRAIN_HOME/logs/<component>.log``.

With ``RETRAIN_PROFILE=celery`` (:mod:`retrain.environment`) the same command runs the scale-out profile on one
host: Airflow metadata and the MLflow store in PostgreSQL, and one Celery worker per queue of
``configs/deployment.yaml`` (``worker-default``, ``worker-gpu``), each with its own task-instance hostname.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from retrain import environment
from retrain.errors import ConfigError
from retrain.settings import get_settings

COMPONENTS = ("mlflow", "api-server", "scheduler", "dag-processor", "triggerer")
ADMIN_USER = "admin"


@dataclass(frozen=True)
class Worker:
    """One Celery worker of the scale-out profile on this host."""

    queue: str
    index: int
    concurrency: int

    @property
    def component(self) -> str:
        return f"worker-{self.queue}" + (f"-{self.index}" if self.index > 1 else "")

    @property
    def name(self) -> str:
        """Celery node name and task-instance hostname (``gpu@host``, ``default-2@host``)."""
        return f"{self.component.removeprefix('worker-')}@{socket.getfqdn()}"


def workers() -> list[Worker]:
    """The Celery workers ``up`` starts here: every queue of ``configs/deployment.yaml``, or only those
    ``RETRAIN_WORKER_QUEUES`` lists (comma-separated; empty: none). None in the embedded profile."""
    if not environment.is_scale_out():
        return []
    from retrain import config

    kinds = config.deployment().workers
    chosen = os.environ.get("RETRAIN_WORKER_QUEUES")
    queues = list(kinds) if chosen is None else [q.strip() for q in chosen.split(",") if q.strip()]
    unknown = [q for q in queues if q not in kinds]
    if unknown:
        raise environment.ProfileError(f"RETRAIN_WORKER_QUEUES names queue(s) {unknown} that configs/deployment.yaml "
                                       f"does not define (known: {sorted(kinds)})")
    return [Worker(q, i, kinds[q].concurrency) for q in queues for i in range(1, kinds[q].replicas + 1)]


def components() -> tuple[str, ...]:
    """The processes of this host's stack: the embedded five, plus the Celery workers in the scale-out profile."""
    return COMPONENTS + tuple(w.component for w in workers())


def _bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def airflow_executable() -> str:
    return _bin("airflow")


@dataclass(frozen=True)
class Endpoints:
    airflow_port: int
    mlflow_port: int

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"


def endpoints() -> Endpoints:
    return Endpoints(int(os.environ.get("RETRAIN_AIRFLOW_PORT", "8080")), int(os.environ.get("RETRAIN_MLFLOW_PORT", "5000")))


def _run_dir() -> Path:
    path = get_settings().home / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _log_dir() -> Path:
    path = get_settings().home / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _jwt_secret() -> str:
    path = _run_dir() / "jwt_secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def stack_environment() -> dict[str, str]:
    """The environment every component of the running stack shares."""
    ends = endpoints()
    settings = get_settings()
    return os.environ | environment.airflow_environment() | {
        "MLFLOW_TRACKING_URI": ends.mlflow_url,
        "AIRFLOW__API__BASE_URL": ends.airflow_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(ends.airflow_port),
        "AIRFLOW__API_AUTH__JWT_SECRET": _jwt_secret(),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(settings.airflow_home / "logs"),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": os.environ.get(
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT", "60"),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PYTHONUNBUFFERED": "1",
    }


def mlflow_artifact_destination() -> str:
    """Where the MLflow server keeps artifacts: ``RETRAIN_MLFLOW_ARTIFACT_ROOT``, else beside the data (S3 when
    the data root is S3), else ``$RETRAIN_HOME/mlflow/artifacts``."""
    settings = get_settings()
    if not os.environ.get("RETRAIN_MLFLOW_ARTIFACT_ROOT") and settings.is_remote_data:
        return settings.data("mlflow-artifacts")
    return settings.mlflow_artifact_root


def mlflow_backend_store() -> str:
    """MLflow's backend store: PostgreSQL (``RETRAIN_MLFLOW_DATABASE_URL``) in the scale-out profile, else SQLite."""
    url = os.environ.get("RETRAIN_MLFLOW_DATABASE_URL")
    if url:
        return environment.sqlalchemy_url(url)
    if environment.is_scale_out():
        raise environment.ProfileError("RETRAIN_PROFILE=celery needs RETRAIN_MLFLOW_DATABASE_URL (a PostgreSQL "
                                       "database of its own: MLflow and Airflow both keep an alembic_version table)")
    return f"sqlite:///{get_settings().home / 'mlflow' / 'mlflow.db'}"


def _mlflow_s3_environment(env: dict[str, str]) -> dict[str, str]:
    """S3 endpoint and credentials for the MLflow server, from the ``aws_default`` connection when the
    environment does not name them (clients need none: artifacts go through the server)."""
    try:
        conn = json.loads(env.get("AIRFLOW_CONN_AWS_DEFAULT") or "{}")
    except json.JSONDecodeError:  # a URI-style connection: the AWS_* variables must be set instead
        return {}
    extra = conn.get("extra") or {}
    if isinstance(extra, str):
        extra = json.loads(extra or "{}")
    found = {"MLFLOW_S3_ENDPOINT_URL": extra.get("endpoint_url"), "AWS_ACCESS_KEY_ID": conn.get("login"),
             "AWS_SECRET_ACCESS_KEY": conn.get("password"), "AWS_DEFAULT_REGION": extra.get("region_name")}
    return {k: str(v) for k, v in found.items() if v and not env.get(k)}


def _commands() -> dict[str, list[str]]:
    ends = endpoints()
    mlflow_dir = get_settings().home / "mlflow"
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    airflow = airflow_executable()
    commands = {
        "mlflow": [_bin("mlflow"), "server", "--host", "127.0.0.1", "--port", str(ends.mlflow_port), "--workers", "1",
                   "--backend-store-uri", mlflow_backend_store(),
                   "--artifacts-destination", mlflow_artifact_destination()],
        "api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(ends.airflow_port), "--workers", "1"],
        "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
        "dag-processor": [airflow, "dag-processor"],
        "triggerer": [airflow, "triggerer", "--skip-serve-logs"],
    }
    # One log folder for all workers on this host: no log server (two would clash on port 8793); no mingle or
    # gossip, which Airflow does not use and which cost every worker a broadcast round at start.
    for worker in workers():
        commands[worker.component] = [airflow, "celery", "worker", "--queues", worker.queue,
                                      "--concurrency", str(worker.concurrency), "--celery-hostname", worker.name,
                                      "--skip-serve-logs", "--without-mingle", "--without-gossip"]
    return commands


def _component_environment(component: str, env: dict[str, str]) -> dict[str, str]:
    if component == "mlflow":
        return env | _mlflow_s3_environment(env)
    for worker in workers():
        if worker.component == component:
            return env | {"RETRAIN_WORKER_NAME": worker.name}
    return env


def setup(*, quiet: bool = True, env: dict[str, str] | None = None) -> None:
    """Migrate the Airflow metadata DB and create the pools; safe to run again."""
    env = env or (os.environ | environment.airflow_environment())
    settings = get_settings()
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    if not settings.is_remote_data:
        for folder in ("landing", "curated", "quarantine", "archive", "work"):
            Path(settings.data(folder)).mkdir(parents=True, exist_ok=True)
    result = subprocess.run([airflow_executable(), "db", "migrate"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"airflow db migrate failed (exit {result.returncode})")
    if not quiet:
        print(f"Airflow metadata DB ready under {settings.airflow_home}")
    from retrain import orchestration

    orchestration.ensure_pools()


def _pid(component: str) -> int | None:
    path = _run_dir() / f"{component}.pid"
    if not path.exists():
        return None
    pid = int(path.read_text().strip())
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    """Whether ``pid`` is running: a zombie (exited, not yet reaped by its parent) is not."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _http_ok(url: str, timeout: float = 2.0) -> tuple[bool, object]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read().decode()
            try:
                return response.status == 200, json.loads(body)
            except json.JSONDecodeError:
                return response.status == 200, body
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        return False, str(exc)


def _answering_workers(names: list[str]) -> set[str]:
    """Celery node names among ``names`` that answer a broadcast ping within a second."""
    from celery import Celery

    env = environment.airflow_environment()
    prefix = env.get("AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX")
    app = Celery(broker=env["AIRFLOW__CELERY__BROKER_URL"],
                 broker_transport_options={"global_keyprefix": prefix} if prefix else {})
    try:
        replies = app.control.ping(destination=names, timeout=1.0)
    except Exception:  # broker unreachable: the workers are not healthy either
        return set()
    finally:
        app.close()
    return {node for reply in replies for node in reply}


# Components whose health the api-server reports (``/api/v2/monitor/health``), under these keys; each entry also
# has ``latest_<key>_heartbeat``.
HEALTH_KEYS = {"scheduler": "scheduler", "triggerer": "triggerer", "dag-processor": "dag_processor"}


def health() -> dict[str, str]:
    """Health of each component as the services report it (or 'down')."""
    ends = endpoints()
    report = {c: ("running" if _pid(c) else "down") for c in components()}
    running = [w for w in workers() if report[w.component] == "running"]
    if running:
        answering = _answering_workers([f"celery@{w.name}" for w in running] + [w.name for w in running])
        for w in running:
            if w.name in answering or f"celery@{w.name}" in answering:
                report[w.component] = "healthy"
    ok, _ = _http_ok(f"{ends.mlflow_url}/health")
    report["mlflow"] = "healthy" if ok else report["mlflow"]
    ok, body = _http_ok(f"{ends.airflow_url}/api/v2/monitor/health")
    if ok and isinstance(body, dict):
        report["api-server"] = "healthy"
        for component, key in HEALTH_KEYS.items():
            status = (body.get(key) or {}).get("status")
            # the API judges by the last heartbeat in the database, which outlives the process for a while
            if status and report[component] != "down":
                report[component] = status
    return report


def admin_password() -> str | None:
    path = get_settings().airflow_home / "simple_auth_manager_passwords.json.generated"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get(ADMIN_USER)


def up(names: Sequence[str] = (), *, timeout: float = 180.0, quiet: bool = False) -> Endpoints:
    """Start every component (or those ``names``) that is not running, wait until they are healthy.

    Run again, it is the local stand-in for a supervisor: Airflow's scheduler, triggerer and dag processor exit when
    the metadata database goes away (compose restarts them, see deploy/README.md), and ``up`` starts what exited.
    """
    known = components()
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ConfigError(f"unknown stack component(s) {unknown}; this host's are {list(known)}")
    wanted = set(names or known)
    env = stack_environment()
    setup(quiet=True, env=env)
    log_dir = _log_dir()
    for component, command in _commands().items():
        if component not in wanted or _pid(component):
            continue
        with open(log_dir / f"{component}.log", "ab") as log:
            process = subprocess.Popen(command, env=_component_environment(component, env), stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       cwd=get_settings().home, start_new_session=True)
        (_run_dir() / f"{component}.pid").write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = {c: state for c, state in health().items() if c in wanted}
        if all(v == "healthy" for v in report.values()):
            break
        dead = [c for c in report if report[c] == "down"]
        if dead:
            raise RuntimeError(f"stack component(s) {dead} exited; see {log_dir}/<component>.log")
        time.sleep(1.0)
    else:
        raise TimeoutError(f"stack not healthy after {timeout:.0f}s: {health()}; logs in {log_dir}")
    ends = endpoints()
    if not quiet:
        print(f"Airflow UI   {ends.airflow_url}   login: {ADMIN_USER} / {admin_password()}")
        print(f"MLflow UI    {ends.mlflow_url}")
        for worker in workers():
            print(f"worker       {worker.name}   queue {worker.queue}, {worker.concurrency} slot(s)")
        print(f"logs         {log_dir}")
    return ends


def down(*, timeout: float = 30.0) -> list[str]:
    """Stop exactly the process sessions ``up`` started (TERM, then KILL after ``timeout``), workers first."""
    stopped = []
    started = {path.stem for path in _run_dir().glob("*.pid")}
    for component in [*sorted(started - set(COMPONENTS)), *reversed(COMPONENTS)]:
        pid = _pid(component)
        if pid is None:
            (_run_dir() / f"{component}.pid").unlink(missing_ok=True)
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        # task processes run in process groups of their own: TERM them too, or a Celery worker's warm shutdown
        # waits for them to finish
        for member in session_members(pid):
            try:
                os.kill(member, signal.SIGTERM)
            except ProcessLookupError:
                pass
        stopped.append(component)
    deadline = time.monotonic() + timeout
    for component in stopped:
        pid = int((_run_dir() / f"{component}.pid").read_text())
        while time.monotonic() < deadline and (_group_alive(pid) or session_members(pid)):
            time.sleep(0.2)
        kill_session(pid)
        (_run_dir() / f"{component}.pid").unlink(missing_ok=True)
    return stopped


def session_members(sid: int) -> list[int]:
    """Live processes of the session ``sid``: a task process forked by a worker leaves the worker's process
    group (the task supervisor gives it its own) but stays in its session."""
    import psutil

    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getsid(proc.pid) == sid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return members


def kill_session(sid: int) -> list[int]:
    """SIGKILL every process of the session ``sid`` (what a host crash does to a component); returns their pids."""
    members = session_members(sid)
    for pid in members:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.waitpid(sid, os.WNOHANG)
    except ChildProcessError:
        pass
    return members


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie leader still counts; reap it if it is our child
    try:
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass
    return _has_live_members(pgid)


def _has_live_members(pgid: int) -> bool:
    import psutil

    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return False


def processes(home: str) -> list:
    """Every live process started for the stack in ``home`` (its environment names that RETRAIN_HOME), children
    and task processes included: what ``down`` must leave empty."""
    import psutil

    found = []
    for proc in psutil.process_iter(["environ"]):
        try:
            if (proc.info["environ"] or {}).get("RETRAIN_HOME") == home:
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
    return found


class AirflowApi:
    """A small client of the running stack's Airflow REST API (token from the generated admin password)."""

    def __init__(self, base_url: str | None = None, password: str | None = None):
        self.base = base_url or endpoints().airflow_url
        body = json.dumps({"username": ADMIN_USER, "password": password or admin_password()}).encode()
        request = urllib.request.Request(f"{self.base}/auth/token", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            self.token = json.load(response)["access_token"]

    def request(self, method: str, path: str, payload: dict | None = None) -> dict:
        request = urllib.request.Request(f"{self.base}/api/v2/{path}", method=method,
                                         data=json.dumps(payload).encode() if payload is not None else None,
                                         headers={"Authorization": f"Bearer {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"dags/{dag_id}/dagRuns?order_by=run_after&limit=1000")["dag_runs"]

    def asset_events(self, query: str = "", *, patience: float = 10.0) -> list[dict]:
        """``GET assets/events?<query>``, retried while Airflow answers 500 for a not-yet-started run.

        Airflow 3.3.2 fails the whole listing when an event's ``created_dagruns`` holds a queued run (its
        ``start_date`` is NULL; apache/airflow#71360, fixed after 3.3.2). Queued runs normally start within a
        second, so a short retry covers it; narrow the query (``source_run_id=…``) to limit the blast radius.
        """
        deadline = time.monotonic() + patience
        while True:
            try:
                return self.get(f"assets/events?{query}")["asset_events"]
            except urllib.error.HTTPError as exc:
                if exc.code != 500 or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def backfill_ticks(start: str, end: str, *, max_active_runs: int = 3, timeout: float = 1800,
                   echo=print) -> dict:
    """Rebuild the tick partitions ``start``..``end`` on the running stack and follow the runs to the end.

    Archived raw files are landed again first; partitions whose content did not change emit no event, so
    they trigger no training (see the backfill policy in ``time_series_training``).
    """
    from datetime import date, timedelta

    from retrain.ingest import ticks

    first, last = date.fromisoformat(start), date.fromisoformat(end)
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    missing = [d for d in days if not ticks.reland(d)]
    if missing:
        echo(f"no landed or archived files for {missing}: those runs will wait for data, then time out")
    api = AirflowApi()
    before = {r["dag_run_id"] for r in api.runs("ingest_ticks")}
    # a backfill's range is of partition dates (the 01:00 UTC cron points), both ends included
    payload = {"dag_id": "ingest_ticks", "from_date": f"{start}T01:00:00Z", "to_date": f"{end}T01:00:00Z",
               "max_active_runs": max_active_runs, "reprocess_behavior": "completed", "run_backwards": False}
    backfill = api.request("POST", "backfills", payload)
    echo(f"backfill {backfill.get('id')}: ingest_ticks {start}..{end} ({len(days)} partitions, "
         f"at most {max_active_runs} at a time)")
    deadline = time.monotonic() + timeout
    last_line = ""
    while time.monotonic() < deadline:
        runs = [r for r in api.runs("ingest_ticks") if r["dag_run_id"] not in before]
        states: dict[str, int] = {}
        for run in runs:
            states[run["state"]] = states.get(run["state"], 0) + 1
        line = "  " + ", ".join(f"{k}: {v}" for k, v in sorted(states.items()))
        if line != last_line:
            echo(line)
            last_line = line
        if runs and all(r["state"] in ("success", "failed") for r in runs) and len(runs) >= len(days):
            return {"partitions": days, "states": states, "backfill_id": backfill.get("id")}
        time.sleep(3)
    raise TimeoutError(f"backfill of {start}..{end} not finished after {timeout:.0f}s")
