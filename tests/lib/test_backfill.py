"""`retrain backfill` against a fake Airflow REST API on a real socket: every listing follows pagination (Airflow
answers at most 100 rows a page whatever `limit` asks), the command returns only once Airflow marks the backfill
complete, and a backfill refused because another is active puts nothing in the landing zone."""

from __future__ import annotations

import json
import threading
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from retrain import stack, storage
from retrain.ingest import landing

PAGE = 100  # Airflow's [api] maximum_page_limit default
CONFLICT = "There is already a running backfill for dag ingest_ticks"


class FakeAirflow:
    """The part of Airflow's REST API that `retrain backfill` uses, with Airflow's paging and 409 rules."""

    def __init__(self, *, runs: int = 0, backfills: list[dict] | None = None, conflict_on_post: bool = False,
                 complete_after: int = 3, server_errors: int = 0):
        self.server_errors = server_errors  # requests answered 500 first (SQLite locked on the embedded stack)
        self.runs = [{"dag_run_id": f"scheduled__{i}", "run_type": "scheduled", "state": "success"}
                     for i in range(runs)]
        self.backfills = list(backfills or [])
        self.conflict_on_post = conflict_on_post
        self.complete_after = complete_after
        self.posts = 0
        self.backfill_gets = 0
        self.landing_at_post: list[str] | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _server_error(self) -> bool:
                if fake.server_errors:
                    fake.server_errors -= 1
                    self._send(500, {"detail": "Internal Server Error"})
                    return True
                return False

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path == "/auth/token":
                    return self._send(201, {"access_token": "token"})
                if self._server_error():
                    return None
                if self.headers.get("Authorization") != "Bearer token":
                    return self._send(401, {"detail": "no token"})
                if self.path == "/api/v2/backfills":
                    return self._send(*fake.create(body))
                return self._send(404, {"detail": self.path})

            def do_GET(self):
                if self.headers.get("Authorization") != "Bearer token":
                    return self._send(401, {"detail": "no token"})
                if self._server_error():
                    return None
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if url.path == "/api/v2/dags/ingest_ticks/dagRuns":
                    rows = [r for r in fake.runs if r["run_type"] == query.get("run_type", r["run_type"])]
                    return self._send(200, fake.page(rows, "dag_runs", query))
                if url.path == "/api/v2/backfills":
                    return self._send(200, fake.page(fake.backfills, "backfills", query))
                if url.path.startswith("/api/v2/backfills/"):
                    return self._send(200, fake.get_backfill(int(url.path.rsplit("/", 1)[1])))
                return self._send(404, {"detail": self.path})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def page(rows: list[dict], key: str, query: dict) -> dict:
        limit = min(int(query.get("limit", PAGE)), PAGE)  # one page at most, whatever limit asks for
        offset = int(query.get("offset", 0))
        return {key: rows[offset:offset + limit], "total_entries": len(rows)}

    def create(self, body: dict) -> tuple[int, dict]:
        self.posts += 1
        self.landing_at_post = storage.listdir(landing.landing_folder("ticks"))
        if self.conflict_on_post or any(not b["completed_at"] for b in self.backfills):
            return 409, {"detail": CONFLICT}
        first = date.fromisoformat(body["from_date"][:10])
        last = date.fromisoformat(body["to_date"][:10])
        days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
        backfill = {"id": len(self.backfills) + 1, "dag_id": body["dag_id"], "from_date": body["from_date"],
                    "to_date": body["to_date"], "completed_at": None, "created_at": "2026-12-05T20:00:00Z"}
        self.backfills.append(backfill)
        # every run finishes at once; Airflow marks the backfill complete only some polls later
        self.runs += [{"dag_run_id": f"backfill__{d}", "run_type": "backfill", "state": "success",
                       "partition_key": d} for d in days]
        return 200, backfill

    def get_backfill(self, backfill_id: int) -> dict:
        self.backfill_gets += 1
        backfill = self.backfills[backfill_id - 1]
        if self.backfill_gets >= self.complete_after and backfill["completed_at"] is None:
            backfill["completed_at"] = "2026-12-05T20:01:00Z"
        return backfill

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _api(fake: FakeAirflow) -> stack.AirflowApi:
    return stack.AirflowApi(fake.url, "password")


@pytest.fixture
def archived_days(retrain_home, tmp_path) -> list[str]:
    """Two tick partitions ingested and archived, the landing zone empty."""
    from retrain.data import tick_generator
    from retrain.ingest import ticks

    days = ["2026-03-02", "2026-03-03"]
    for seed, day in enumerate(days):
        folder = tmp_path / "src" / f"date={day}"
        folder.mkdir(parents=True)
        table = tick_generator.generate_ticks(date.fromisoformat(day), ticks_per_day=2_000, seed=seed)
        (folder / "ticks.csv").write_bytes(tick_generator.to_csv_bytes(table))
        landing.land("ticks", str(folder))
        ticks.ingest_partition(day, f"run-{day}")
    assert storage.listdir(landing.landing_folder("ticks")) == []
    return days


def _archive_files(retrain_home: Path) -> list[Path]:
    return sorted(p for p in (retrain_home / "data" / "archive" / "ticks").rglob("*") if p.is_file())


def test_every_listing_follows_pagination(retrain_home):
    with FakeAirflow(runs=250) as fake:
        api = _api(fake)
        runs = api.runs("ingest_ticks")
        assert [r["dag_run_id"] for r in runs] == [f"scheduled__{i}" for i in range(250)]
        capped = api.listing("dags/ingest_ticks/dagRuns?order_by=run_after&limit=150", "dag_runs")
        assert [r["dag_run_id"] for r in capped] == [f"scheduled__{i}" for i in range(150)]


def test_backfill_returns_when_airflow_marks_it_complete_past_one_page(archived_days, retrain_home):
    start = date(2026, 1, 1)
    end = start + timedelta(days=129)  # 130 partitions: more than one page of runs
    lines: list[str] = []
    with FakeAirflow(runs=120, complete_after=4) as fake:
        result = stack.backfill_ticks(start.isoformat(), end.isoformat(), poll=0.01, timeout=30, echo=lines.append,
                                      api=_api(fake))
        assert fake.backfill_gets >= 4 and result["completed_at"] == "2026-12-05T20:01:00Z"
    assert len(result["partitions"]) == 130 and result["states"] == {"success": 130}
    assert "backfill complete" in lines[-1]


@pytest.mark.parametrize("case", ["active backfill on the second page", "409 from Airflow"])
def test_a_second_backfill_is_refused_and_lands_nothing(case, archived_days, retrain_home):
    before = _archive_files(retrain_home)
    finished = [{"id": i, "dag_id": "ingest_ticks", "completed_at": "2026-12-01T00:00:00Z"} for i in range(1, 151)]
    if case.startswith("active"):
        fake = FakeAirflow(backfills=finished + [{"id": 151, "dag_id": "ingest_ticks", "completed_at": None,
                                                   "from_date": "2026-03-01T01:00:00Z",
                                                   "to_date": "2026-03-05T01:00:00Z",
                                                   "created_at": "2026-12-05T19:59:00Z"}])
    else:
        fake = FakeAirflow(backfills=finished, conflict_on_post=True)
    with fake:
        with pytest.raises(stack.BackfillRefused) as refused:
            stack.backfill_ticks(archived_days[0], archived_days[-1], poll=0.01, timeout=5, echo=lambda _: None,
                                 api=_api(fake))
    message = str(refused.value)
    if case.startswith("active"):
        assert fake.posts == 0
        assert ("backfill 151 of ingest_ticks (2026-03-01..2026-03-05, created 2026-12-05T19:59:00Z) is still active"
                in message)
    else:
        assert fake.posts == 1 and fake.landing_at_post == []  # nothing was re-landed before Airflow said yes
        assert f"Airflow answered 409 Conflict: {CONFLICT}" in message
    assert "one active backfill per DAG" in message and "\n" not in message
    assert storage.listdir(landing.landing_folder("ticks")) == []
    assert _archive_files(retrain_home) == before


def test_the_command_refuses_in_one_line(archived_days, retrain_home, monkeypatch, capsys):
    from retrain import cli

    fake = FakeAirflow(conflict_on_post=True)
    real = stack.AirflowApi.__init__
    # the command reaches "the running stack": here, the fake API
    monkeypatch.setattr(stack, "AirflowApi", type("Api", (stack.AirflowApi,), {
        "__init__": lambda self: real(self, fake.url, "password")}))
    with fake:
        args = cli.build_parser().parse_args(["backfill", "ticks", *archived_days])
        assert args.func(args) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("retrain backfill: refused: Airflow answered 409 Conflict") and "\n" not in err
    assert "Traceback" not in err
    assert storage.listdir(landing.landing_folder("ticks")) == []


def test_an_accepted_backfill_relands_the_archived_partitions(archived_days, retrain_home):
    with FakeAirflow(complete_after=1) as fake:
        stack.backfill_ticks(archived_days[0], archived_days[-1], poll=0.01, timeout=5, echo=lambda _: None,
                             api=_api(fake))
        assert fake.landing_at_post == []  # re-landed only after Airflow accepted the backfill
    assert storage.listdir(landing.landing_folder("ticks")) == [f"date={d}" for d in archived_days]


def test_a_listing_that_ignores_offset_fails_instead_of_looping(retrain_home):
    with FakeAirflow(runs=250) as fake:
        api = _api(fake)
        first_page = api.get("dags/ingest_ticks/dagRuns")
        with pytest.raises(RuntimeError, match="offset=100 returned the first page again"):
            api.listing("dags/ingest_ticks/dagRuns", "dag_runs", get=lambda path: first_page)


def test_a_range_reaching_past_yesterday_is_refused_before_anything_is_asked(retrain_home):
    """Airflow accepts such a range and queues the runs of days to come until their run time: the command
    used to wait for them until its timeout (309 of 365 partitions ingested, the rest queued)."""
    import os
    import subprocess
    import sys
    from datetime import datetime, timezone

    from retrain.errors import UsageError

    today = datetime.now(timezone.utc).date()
    first, last = (today - timedelta(days=3)).isoformat(), (today + timedelta(days=1)).isoformat()
    with FakeAirflow() as fake:
        with pytest.raises(UsageError, match=f"the last must come before today, {today} UTC "
                                             fr"\(observed {last}, 2 day\(s\) not over\)"):
            stack.backfill_ticks(first, last, echo=lambda _: None, api=_api(fake))
        assert fake.posts == 0
    out = subprocess.run([sys.executable, "-m", "retrain", "backfill", "ticks", first, today.isoformat()],
                         env=os.environ | {"RETRAIN_HOME": str(retrain_home)}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    err = out.stderr.strip()
    assert err.startswith(f"retrain backfill: backfill {first}..{today}: a backfill rebuilds days that are over")
    assert "\n" not in err
    assert storage.listdir(landing.landing_folder("ticks")) == []


def test_a_read_answered_500_is_asked_again_and_a_create_is_not(monkeypatch):
    """The embedded stack answers 500 while SQLite stays locked past its busy timeout (a CI run met it on a
    PATCH): idempotent requests are asked again after a pause; a POST, which may have been done, never is."""
    monkeypatch.setattr(stack.AirflowApi, "RETRY_DELAYS", (0.01, 0.01, 0.01))
    with FakeAirflow(server_errors=2) as fake:
        assert _api(fake).get("backfills")["total_entries"] == 0
    with FakeAirflow(server_errors=4) as fake:
        with pytest.raises(stack.urllib.error.HTTPError, match="500"):
            _api(fake).get("backfills")  # three pauses, then the error
    with FakeAirflow(server_errors=1) as fake:
        with pytest.raises(stack.urllib.error.HTTPError, match="500"):
            _api(fake).request("POST", "backfills", {"dag_id": "ingest_ticks"})
        assert fake.server_errors == 0 and fake.posts == 0
