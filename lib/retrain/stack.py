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
import logging
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

log = logging.getLogger(__name__)
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


def _private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700), created so or tightened if it was looser."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def _private_home() -> Path:
    """``RETRAIN_HOME``, 0700: it holds the admin password, the JWT secret, the metadata DB and the logs."""
    return _private_dir(get_settings().home)


def _run_dir() -> Path:
    return _private_dir(_private_home() / "run")


def _log_dir() -> Path:
    return _private_dir(_private_home() / "logs")


def _private_file(path: Path, content: str) -> bool:
    """Create ``path`` with ``content``, 0600 from the start (never readable by others, not even for a moment);
    False if it already existed (then it is only tightened to 0600)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    return True


def _jwt_secret() -> str:
    path = _run_dir() / "jwt_secret"
    _private_file(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def password_file(env: dict[str, str] | None = None) -> Path:
    """Where the Airflow ``admin`` password is kept (SimpleAuthManager's generated-passwords file)."""
    return Path((env or environment.airflow_environment())["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])


def _ensure_admin_password(path: Path) -> None:
    """Write the ``admin`` password before Airflow does: SimpleAuthManager creates a missing file with the
    process umask (0644) and prints every password it generates to stdout, so into the api-server log. With
    the user already in a 0600 file it generates nothing, prints nothing and keeps the file's mode."""
    alphabet = "abcdefghkmnpqrstuvwxyzABCDEFGHKMNPQRSTUVWXYZ23456789"  # Airflow's own: no look-alike characters
    password = "".join(secrets.choice(alphabet) for _ in range(20))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if _private_file(path, json.dumps({ADMIN_USER: password}) + "\n"):
        return
    try:
        users = json.loads(path.read_text() or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: the Airflow password file is not JSON (rule: a JSON object of user -> "
                          f"password; observed: {exc})") from None
    if ADMIN_USER not in users:
        staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        staged.unlink(missing_ok=True)
        _private_file(staged, json.dumps(users | {ADMIN_USER: password}) + "\n")
        os.replace(staged, path)


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
        # a restarted scheduler adopts (or fails, and so retries) the tasks of the one that died within a
        # minute, not Airflow's default five: a worker lost with its scheduler costs one minute of freshness
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": os.environ.get(
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL", "60"),
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
    """Make ``RETRAIN_HOME`` and the Airflow home private (0700), write the admin password file (0600), migrate
    the Airflow metadata DB and create the pools; safe to run again."""
    env = env or (os.environ | environment.airflow_environment())
    settings = get_settings()
    _private_home()
    _private_dir(settings.airflow_home)
    _ensure_admin_password(password_file(env))
    if not settings.is_remote_data:
        for folder in ("landing", "curated", "quarantine", "archive", "work"):
            Path(settings.data(folder)).mkdir(parents=True, exist_ok=True)
    result = subprocess.run([airflow_executable(), "db", "migrate"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"airflow db migrate failed (exit {result.returncode})")
    if not quiet:
        print(f"Airflow metadata DB ready under {settings.airflow_home}")
    from retrain.airflow import pools

    pools.ensure_pools()


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
    path = password_file()
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
        leftovers = _stop_leftovers(component)
        if leftovers and not quiet:
            print(f"{component}: stopped {len(leftovers)} process(es) left from its previous run (pids {leftovers})")
        fd = os.open(log_dir / f"{component}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)  # a log written before the home was made private may be 0644
        with open(fd, "ab") as log:
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
        print(f"Airflow UI   {ends.airflow_url}   login: {ADMIN_USER}, password in {password_file()}")
        print(f"MLflow UI    {ends.mlflow_url}")
        for worker in workers():
            print(f"worker       {worker.name}   queue {worker.queue}, {worker.concurrency} slot(s)")
        print(f"logs         {log_dir}")
    return ends


def down(*, timeout: float = 30.0) -> list[str]:
    """Stop every process session ``up`` recorded (TERM to each member, then KILL after ``timeout``), workers first.

    The whole session, not only its leader: a component that was killed leaves its children behind (a SIGKILLed
    scheduler's LocalExecutor workers are re-parented to init and keep running), and they are stopped too."""
    stopping = {}
    recorded = {path.stem for path in _run_dir().glob("*.pid")}
    for component in [*sorted(recorded - set(COMPONENTS)), *reversed(COMPONENTS)]:
        sid = _recorded_session(component)
        # task processes run in process groups of their own, so the session, not the group: TERM them too, or a
        # Celery worker's warm shutdown waits for them to finish
        if sid is not None and _signal_session(sid, signal.SIGTERM):
            stopping[component] = sid
        else:
            (_run_dir() / f"{component}.pid").unlink(missing_ok=True)
    deadline = time.monotonic() + timeout
    for component, sid in stopping.items():
        while time.monotonic() < deadline and session_members(sid):
            time.sleep(0.2)
        kill_session(sid)
        gone = time.monotonic() + 5.0  # SIGKILL is not instant: return once the session is really empty
        while time.monotonic() < gone and session_members(sid):
            time.sleep(0.1)
        (_run_dir() / f"{component}.pid").unlink(missing_ok=True)
    return list(stopping)


def _recorded_session(component: str) -> int | None:
    """The session ``up`` started ``component`` in (its leader's pid), whether or not the leader still runs."""
    try:
        return int((_run_dir() / f"{component}.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _signal_session(sid: int, sig: int) -> list[int]:
    """Send ``sig`` to every live process of the session ``sid``; returns their pids. Only members are signalled:
    a dead leader's pid may belong to an unrelated process by now, but not while its session has members."""
    members = session_members(sid)
    for pid in members:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return members


def _stop_leftovers(component: str, timeout: float = 5.0) -> list[int]:
    """Stop what is left of ``component``'s previous session, whose leader is gone (TERM, then KILL after
    ``timeout``), so a restart does not leave the old children running beside the new ones. Returns their pids."""
    sid = _recorded_session(component)
    left = _signal_session(sid, signal.SIGTERM) if sid is not None else []
    if left:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and session_members(sid):
            time.sleep(0.2)
        kill_session(sid)
    return left


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

    # An idempotent request answered 5xx is asked again: on the embedded stack a write (even the audit-log row
    # of a PATCH) fails with 500 when SQLite stays locked past its 5 s busy timeout while tasks commit.
    IDEMPOTENT = frozenset({"GET", "PUT", "PATCH", "DELETE"})
    RETRY_DELAYS = (1.0, 2.0, 4.0)

    def request(self, method: str, path: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else None
        delays = list(self.RETRY_DELAYS) if method in self.IDEMPOTENT else []
        while True:
            request = urllib.request.Request(f"{self.base}/api/v2/{path}", method=method, data=data,
                                             headers={"Authorization": f"Bearer {self.token}",
                                                      "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.load(response)
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or not delays:
                    raise
                log.warning("%s %s: Airflow answered %s; asking again in %.0f s", method, path, exc.code, delays[0])
                time.sleep(delays.pop(0))

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def listing(self, path: str, key: str, *, get=None) -> list[dict]:
        """Every row of a REST listing (``path`` with its query, ``key`` the rows' field), page by page.

        Airflow answers at most one page (``[api] maximum_page_limit``, 100 by default) whatever ``limit``
        asks for, so this follows ``offset`` until ``total_entries`` rows came back. A ``limit`` in ``path``
        still caps the rows returned (the caller asked for at most that many). Order by a stable key
        (``order_by=id`` or a timestamp) so rows added meanwhile do not shift earlier pages.
        """
        import urllib.parse

        base, _, query = path.partition("?")
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        params = [(k, v) for k, v in pairs if k not in ("limit", "offset")]
        wanted = next((int(v) for k, v in pairs if k == "limit"), None)
        rows: list[dict] = []
        while wanted is None or len(rows) < wanted:
            page_params = params + [("offset", str(len(rows)))]
            if wanted is not None:
                page_params.append(("limit", str(wanted - len(rows))))
            page = (get or self.get)(f"{base}?{urllib.parse.urlencode(page_params)}")
            batch = page.get(key) or []
            if rows and batch and batch[0] == rows[0]:  # an endpoint that ignores offset would repeat forever
                raise RuntimeError(f"GET {base}: offset={len(rows)} returned the first page again (rule: a "
                                   f"paginated listing honours offset; total_entries {page.get('total_entries')})")
            rows += batch
            if not batch or len(rows) >= int(page.get("total_entries", len(rows))):
                break
        return rows[:wanted] if wanted is not None else rows

    def runs(self, dag_id: str) -> list[dict]:
        """Every run of a DAG, oldest first (all pages)."""
        return self.listing(f"dags/{dag_id}/dagRuns?order_by=run_after", "dag_runs")

    def asset_events(self, query: str = "", *, patience: float = 10.0) -> list[dict]:
        """``GET assets/events?<query>`` (all pages), retried while Airflow answers 500 for a not-yet-started run.

        Airflow 3.3.2 fails the whole listing when an event's ``created_dagruns`` holds a queued run (its
        ``start_date`` is NULL; apache/airflow#71360, fixed after 3.3.2). Queued runs normally start within a
        second, so a short retry covers it; narrow the query (``source_run_id=…``) to limit the blast radius.
        """
        deadline = time.monotonic() + patience

        def get(path: str) -> dict:
            while True:
                try:
                    return self.get(path)
                except urllib.error.HTTPError as exc:
                    if exc.code != 500 or time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)

        return self.listing(f"assets/events?{query}", "asset_events", get=get)


class BackfillRefused(RuntimeError):
    """Airflow will not start the backfill (one is still active for the DAG); nothing was re-landed."""


def active_backfills(api: AirflowApi, dag_id: str) -> list[dict]:
    """The DAG's backfills Airflow does not yet consider complete (no ``completed_at``)."""
    return [b for b in api.listing(f"backfills?dag_id={dag_id}&order_by=id", "backfills") if not b.get("completed_at")]


def _refusal(dag_id: str, active: dict | None, detail: str = "") -> BackfillRefused:
    if active:
        what = (f"backfill {active.get('id')} of {dag_id} ({str(active.get('from_date'))[:10]}.."
                f"{str(active.get('to_date'))[:10]}, created {active.get('created_at')}) is still active")
    else:
        what = f"Airflow answered 409 Conflict: {detail or 'a backfill of ' + dag_id + ' is still active'}"
    return BackfillRefused(f"{what}; Airflow allows one active backfill per DAG (rule), and marks one complete "
                           "tens of seconds after its last run: run this again once it is complete")


def backfill_ticks(start: str, end: str, *, max_active_runs: int = 3, timeout: float = 1800, poll: float = 3.0,
                   echo=print, api: AirflowApi | None = None) -> dict:
    """Rebuild the tick partitions ``start``..``end`` on the running stack; return once Airflow marks the
    backfill complete (``completed_at``), not merely when its runs have finished.

    The backfill is created first and archived raw files are re-landed only once Airflow accepted it (its
    runs wait for their partition in a deferred sensor meanwhile). So a backfill refused because another one
    is still active (checked first; Airflow's 409 covers the race) puts nothing in ``landing/``, and a re-land
    never touches a partition already there: no landed file can be lost or left behind by this command.
    Partitions whose content did not change emit no event, so they trigger no training (see the backfill
    policy in ``time_series_training``). BackfillRefused when another backfill is active.
    """
    from datetime import datetime, timedelta, timezone

    from retrain.data.ticks import partition_day
    from retrain.errors import UsageError
    from retrain.ingest import ticks

    dag_id = "ingest_ticks"
    first, last = partition_day(start), partition_day(end)
    if last < first:
        raise UsageError(f"backfill {start}..{end}: the first partition must not come after the last "
                         f"(observed {start} > {end})")
    today = datetime.now(timezone.utc).date()
    if last >= today:
        # Airflow accepts the range but queues the runs of days to come until their run time: the command
        # would wait for them, and their partitions hold no whole day yet
        raise UsageError(f"backfill {start}..{end}: a backfill rebuilds days that are over; the last must come "
                         f"before today, {today} UTC (observed {end}, {(last - today).days + 1} day(s) not over)")
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    api = api or AirflowApi()
    active = active_backfills(api, dag_id)
    if active:
        raise _refusal(dag_id, active[0])
    backfill_runs = f"dags/{dag_id}/dagRuns?run_type=backfill&order_by=run_after"
    before = {r["dag_run_id"] for r in api.listing(backfill_runs, "dag_runs")}
    # a backfill's range is of partition dates (the 01:00 UTC cron points), both ends included
    payload = {"dag_id": dag_id, "from_date": f"{start}T01:00:00Z", "to_date": f"{end}T01:00:00Z",
               "max_active_runs": max_active_runs, "reprocess_behavior": "completed", "run_backwards": False}
    try:
        backfill = api.request("POST", "backfills", payload)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise
        try:
            detail = json.loads(exc.read() or b"{}").get("detail", "")
        except ValueError:
            detail = ""
        raise _refusal(dag_id, None, str(detail)) from None
    echo(f"backfill {backfill.get('id')}: {dag_id} {start}..{end} ({len(days)} partitions, "
         f"at most {max_active_runs} at a time)")
    missing = [d for d in days if not ticks.reland(d)]
    if missing:
        echo(f"no landed or archived files for {missing}: those runs will wait for data, then time out")
    deadline = time.monotonic() + timeout
    last_line = ""
    while time.monotonic() < deadline:
        state = api.get(f"backfills/{backfill['id']}")
        runs = [r for r in api.listing(backfill_runs, "dag_runs") if r["dag_run_id"] not in before]
        states: dict[str, int] = {}
        for run in runs:
            states[run["state"]] = states.get(run["state"], 0) + 1
        line = "  " + ", ".join(f"{k}: {v}" for k, v in sorted(states.items()))
        if state.get("completed_at"):
            line += "  (backfill complete)"
        if line != last_line:
            echo(line)
            last_line = line
        if state.get("completed_at"):
            return {"partitions": days, "states": states, "backfill_id": backfill["id"],
                    "completed_at": state["completed_at"]}
        time.sleep(poll)
    raise TimeoutError(f"backfill {backfill['id']} of {start}..{end} not complete after {timeout:.0f}s "
                       f"(rule: wait for Airflow's completed_at; last progress:{last_line or ' no runs yet'})")


class StackDown(RuntimeError):
    """The running stack's API cannot be reached (not started, or stopped)."""


def emit_champion_event(model: str, move, *, run_id: str | None = None, metrics: dict | None = None) -> dict:
    """Publish ``<model>.champion`` for an alias move made outside a DAG (``retrain rollback``, ``retrain
    promote``) through the running stack's REST API, with the same extra the promotion DAG emits (``run_id`` and
    ``metrics``: the new champion's candidate run, when the move promoted one)."""
    import urllib.parse

    from retrain import assets

    name = assets.CHAMPION_ASSETS[model].name
    try:
        api = AirflowApi()
        found = api.listing(f"assets?name_pattern={urllib.parse.quote(name)}&order_by=id", "assets")
    except (OSError, urllib.error.URLError, KeyError, TypeError) as exc:
        raise StackDown(f"the Airflow API at {endpoints().airflow_url} did not answer ({exc}); "
                        "the move is in `retrain history`") from None
    asset = next((a for a in found if a["name"] == name), None)
    if asset is None:
        raise StackDown(f"Airflow knows no asset {name!r} yet (no champion event was ever emitted for it)")
    from retrain.events import ChampionEvent

    extra = ChampionEvent.of(model, move.champion, previous_champion=move.previous_champion, run_id=run_id,
                             metrics=metrics or {}, action=move.entry.get("action"), by=move.entry.get("by"),
                             reason=move.entry.get("reason")).extra()
    return api.request("POST", "assets/events", {"asset_id": asset["id"], "extra": extra})
