"""``retrain demo``: the whole event-driven chain on the real embedded stack, followed live.

``retrain up`` starts the stack (MLflow server, Airflow api-server, scheduler, dag-processor, triggerer); the
demo then generates sample data for all four datasets in their real formats and lands it. Nothing else is
triggered by hand: ingest DAGs publish asset events, training DAGs run because of them, candidates reach the
promotion DAGs, and decisions appear on the model versions in MLflow. The next weeks of the same household's power readings and a second MNIST batch
shows automatic retraining; a three-partition tick backfill shows the partition policy. The progress display
is read from the Airflow REST API and MLflow, as a reviewer would see it in the two UIs.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

from retrain import catalog, promotion, samples, stack, storage
from retrain.settings import get_settings

# demo density: the whole chain settles in a few minutes on 2 cores
POWER_DAYS = (45, 21)  # the first file, then the next three weeks of the same household


def _power_continues() -> datetime:
    """Where the household power series ends (its next reading), or the UCI file's first reading."""
    from retrain import snapshots

    head = snapshots.head("household_power")
    if head is None or not head.manifest.get("series"):
        return samples.POWER_START
    return datetime.fromisoformat(head.manifest["time_range"][1]) + timedelta(minutes=1)
# test images per drop: the cumulative test split is the held-out set promotion judges on, and reaches each
# policy's required n (configs/promotion.yaml) by the demo's first comparison with a champion: MNIST's
# retrain (two drops, 3000 >= 1916); CIFAR-10 is not retrained by the demo: its first drop alone holds it
# (2700 >= 2683), so any later drop is judged on a powered set
MNIST = {"n_train": 3000, "n_test": 1500}
CIFAR10 = {"n_per_batch": 900, "n_batches": 2, "n_test": 2700}
TICKS_PER_DAY = 40_000
TICK_DAYS = 3

# model -> (dataset, training DAG, promotion DAG), from the catalog
MODELS = {m.name: (m.dataset, catalog.workload_entry(catalog.dataset(m.dataset).workload).training_dag,
                   catalog.promotion_dag(m.name)) for m in catalog.MODELS.values()}
FINAL = ("success", "failed")


def _echo(text: str) -> None:
    print(text, flush=True)  # flushed: a forked child must not inherit (and print again) a buffered line


def _log_path(log_root: Path, ti: dict) -> str:
    """Where the task's log file is (Airflow's default ``log_filename_template``)."""
    mapped = f"map_index={ti['map_index']}/" if ti.get("map_index", -1) >= 0 else ""
    return str(log_root / f"dag_id={ti['dag_id']}" / f"run_id={ti['dag_run_id']}" / f"task_id={ti['task_id']}"
               / f"{mapped}attempt={max(ti.get('try_number') or 1, 1)}.log")


@dataclass
class Follower:
    """Polls Airflow and MLflow; prints each DAG-run transition, asset event, review request and decision."""

    api: stack.AirflowApi
    mlflow_url: str
    started: float = field(default_factory=time.monotonic)
    echo: Callable[[str], None] = _echo
    log_root: Path = field(default_factory=lambda: get_settings().airflow_home / "logs")
    runs: dict[tuple[str, str], str] = field(default_factory=dict)
    unread: set[tuple[str, str]] = field(default_factory=set)  # finished runs whose events are not shown yet
    decisions: dict[str, dict] = field(default_factory=dict)  # candidate run id -> its decision tags
    reviews: dict[tuple[str, str, int], dict] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.echo(f"[{time.monotonic() - self.started:6.1f}s] {text}")

    def prime(self) -> None:
        """Remember what is already there (a stack that ran before) without printing it."""
        for run in self.api.listing("dags/~/dagRuns?order_by=-run_after&limit=200", "dag_runs"):
            self.runs[(run["dag_id"], run["dag_run_id"])] = run["state"]
        for run in candidate_runs(self.mlflow_url):
            if run.data.tags.get("promotion.decision"):
                self.decisions[run.info.run_id] = dict(run.data.tags)

    def poll(self) -> None:
        self._runs()
        self._events()
        self._decisions()

    def _runs(self) -> None:
        for run in reversed(self.api.listing("dags/~/dagRuns?order_by=-run_after&limit=200", "dag_runs")):
            key = (run["dag_id"], run["dag_run_id"])
            state, before = run["state"], self.runs.get(key)
            if state == before:
                if run["dag_id"].startswith("promote") and state == "running":
                    self._review_requests(run)
                continue
            self.runs[key] = state
            if run["dag_id"] == "reconcile_freshness" and state != "failed":
                continue  # every 30 s; what it triggers shows as the training run (run type "manual")
            if state in FINAL:
                self.unread.add(key)
            label = run.get("partition_key") or run["run_type"]
            note = self._skipped(run) if state == "success" and run["dag_id"].endswith("_training") else ""
            self.say(f"{run['dag_id']:<28} {label:<16} {state}{note}")
            if state == "failed":
                self._failure(run)

    def _skipped(self, run: dict) -> str:
        tis = self.api.listing(f"dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances", "task_instances")
        skipped = sorted({ti["task_id"] for ti in tis if ti["state"] == "skipped"})
        return f"  (skipped: {', '.join(skipped)} — nothing to train, see the run's first task)" if skipped else ""

    def _failure(self, run: dict) -> None:
        tis = self.api.listing(f"dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances", "task_instances")
        for ti in tis:
            if ti["state"] == "failed":
                failure = {"dag_id": ti["dag_id"], "run_id": ti["dag_run_id"], "task_id": ti["task_id"],
                           "map_index": ti["map_index"], "log": _log_path(self.log_root, ti)}
                self.failures.append(failure)
                mapped = f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""
                self.say(f"  FAILED {ti['dag_id']}.{ti['task_id']}{mapped}  log: {failure['log']}")

    def _review_requests(self, run: dict) -> None:
        tis = self.api.listing(f"dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances", "task_instances")
        for ti in tis:
            key = (run["dag_id"], run["dag_run_id"], ti["map_index"])
            if ti["state"] in ("awaiting_input", "deferred") and ti["task_id"].startswith("review") and key not in self.reviews:
                self.reviews[key] = ti
                self.say(f"  review waiting: {run['dag_id']}.{ti['task_id']}[{ti['map_index']}] — approve or reject "
                         f"in the Airflow UI: {self.api.base}/required_actions")

    def _events(self) -> None:
        """Events of runs that finished since the last poll (queried per run: see AirflowApi.asset_events)."""
        for dag_id, run_id in sorted(self.unread):
            try:
                events = self.api.asset_events(f"source_dag_id={dag_id}&source_run_id={quote(run_id)}", patience=0)
            except urllib.error.HTTPError:
                continue  # a run it triggered has not started yet: read it at the next poll
            self.unread.discard((dag_id, run_id))
            for event in events:
                self._print_event(event)

    def _print_event(self, event: dict) -> None:
        extra = event.get("extra") or {}
        metrics = extra.get("metrics") or {}
        policy = promotion.policy_for(extra["model"]) if extra.get("model") in MODELS else None
        if policy and policy.primary_metric in metrics:
            detail = f"{policy.primary_metric} {metrics[policy.primary_metric]:.4g}"
            if policy.baseline_metric in metrics:
                detail += f" (baseline {metrics[policy.baseline_metric]:.4g})"
        elif "version" in extra:
            detail = f"version {str(extra['version'])[:12]}, {extra.get('rows', '?')} rows"
        else:
            detail = ""
        partition = f" [{event['partition_key']}]" if event.get("partition_key") else ""
        self.say(f"  event {event['name']}{partition} <- {event.get('source_dag_id') or 'API'}  {detail}")

    def _decisions(self) -> None:
        for run in candidate_runs(self.mlflow_url):
            tags = run.data.tags
            decision = tags.get("promotion.decision")
            if not decision or self.decisions.get(run.info.run_id, {}).get("promotion.decision") == decision:
                continue
            self.decisions[run.info.run_id] = dict(tags)
            version = tags.get("promotion.version")
            reasons = tags.get("promotion.reasons", "")
            self.say(f"  decision {tags.get('retrain.model_name')}: {decision}"
                     f"{f' (version {version})' if version else ''} — {reasons[:110]}")

    def decided(self, model: str) -> int:
        """How many of the model's candidates have a decision (awaiting approval counts)."""
        return sum(1 for tags in self.decisions.values() if tags.get("retrain.model_name") == model)

    def wait(self, what: str, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if done():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not done after {timeout:.0f}s")
            time.sleep(2)


def _client(mlflow_url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_url)


def candidate_runs(mlflow_url: str) -> list:
    client = _client(mlflow_url)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    return client.search_runs(experiments, filter_string="tags.`retrain.role` = 'candidate'",
                              order_by=["attributes.start_time ASC"], max_results=500)


def summary(mlflow_url: str, airflow_url: str) -> list[dict]:
    """Per model: versions, champion, its primary metric, the latest decision and why, and links."""
    from mlflow.exceptions import MlflowException

    client = _client(mlflow_url)
    runs = candidate_runs(mlflow_url)
    rows = []
    for model, (_, training_dag, _) in MODELS.items():
        mine = [r for r in runs if r.data.tags.get("retrain.model_name") == model]
        latest = mine[-1].data.tags if mine else {}
        metric = promotion.policy_for(model).primary_metric
        try:
            versions = client.search_model_versions(f"name = '{model}'")
        except MlflowException:
            versions = []
        champion, value = None, None
        try:
            mv = client.get_model_version_by_alias(model, "champion")
            champion = mv.version
            value = client.get_run(mv.run_id).data.metrics.get(metric)
        except MlflowException:
            pass
        rows.append({"model": model, "candidates": len(mine), "versions": len(versions), "champion": champion,
                     "metric": metric, "value": value, "decision": latest.get("promotion.decision", "—"),
                     "reason": latest.get("promotion.reasons", ""), "power": _power(latest),
                     "mlflow": f"{mlflow_url}/#/models/{model}" + (f"/versions/{champion}" if champion else ""),
                     "airflow": f"{airflow_url}/dags/{training_dag}"})
    return rows


def _power(tags: dict) -> str:
    """The latest decision's n, minimum detectable effect (80 % power) and held-out set, as its run records them."""
    if "promotion.mde" not in tags:
        return ""
    against = "vs the naive baseline" if tags.get("promotion.against") == "baseline" else "vs the champion"
    needs = f" (needs n ≥ {tags['promotion.required_n']})" if tags.get("promotion.required_n") else ""
    enough = {"true": f"; enough for the policy minimum{needs}", "false": f"; too small for the policy minimum{needs}"}
    held = f"; held out: {tags['promotion.eval_set']}" if tags.get("promotion.eval_set") else ""
    return (f"n={tags.get('promotion.n')} {against}, detects ≥ {float(tags['promotion.mde']):.4g} at 80% power"
            f"{enough.get(tags.get('promotion.powered'), '')}{held}")


def print_summary(rows: list[dict], echo=_echo) -> None:
    echo(f"\n{'model':<22} {'cand.':>5} {'vers.':>5} {'champion':>8}  {'primary metric':<24} decision")
    for r in rows:
        value = f"{r['metric']} {r['value']:.4f}" if r["value"] is not None else f"{r['metric']} —"
        echo(f"{r['model']:<22} {r['candidates']:>5} {r['versions']:>5} {r['champion'] or '—'!s:>8}  "
             f"{value:<24} {r['decision']}")
        if r["reason"]:
            echo(f"{'':<22} why: {r['reason'][:150]}")
        if r.get("power"):
            echo(f"{'':<22} power: {r['power']}")
        echo(f"{'':<22} {r['mlflow']}   {r['airflow']}")


def run(*, exit_when_done: bool = False, timeout: float = 900.0, echo=_echo) -> int:
    """Start the stack, land every dataset, follow the chain, print the summary; see the module docstring."""
    from retrain.ingest import landing

    settings = get_settings()
    echo(f"RETRAIN_HOME={settings.home}")
    ends = stack.up()
    api = stack.AirflowApi()
    follow = Follower(api, ends.mlflow_url, echo=echo)
    batch = storage.join(str(settings.home), "samples", datetime.now().strftime("%Y%m%dT%H%M%S"))
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        return max(deadline - time.monotonic(), 1.0)

    def land(dataset: str, location: str) -> None:
        landing.land(dataset, location)
        follow.say(f"landed {dataset}: {storage.name(location)}")

    # new content on every run of the demo (the same bytes again would be ingested once, by design)
    seed = int(time.time()) % 100_000
    try:
        follow.prime()
        follow.say("1/3  first data for household power, MNIST and CIFAR-10")
        # one household's series: the first file continues whatever an earlier demo left, the second continues it
        power_start = _power_continues()
        land("household_power", samples.power(storage.join(batch, "power-1.txt"), days=POWER_DAYS[0],
                                              start=power_start, seed=seed))
        land("mnist", samples.mnist(storage.join(batch, "mnist-1"), seed=seed, **MNIST))
        land("cifar10", samples.cifar10(storage.join(batch, "cifar10-1"), seed=seed, **CIFAR10))
        first = {m: follow.decided(m) + 1 for m in ("household_power_lgbm", "mnist_cnn", "cifar10_cnn")}
        follow.wait("first models decided", lambda: all(follow.decided(m) >= n for m, n in first.items()) or
                    bool(follow.failures), remaining())

        follow.say("2/3  the next three weeks of household power and a second MNIST batch: both retrain by themselves")
        land("household_power", samples.power(storage.join(batch, "power-2.txt"), days=POWER_DAYS[1], seed=seed,
                                              start=power_start + timedelta(days=POWER_DAYS[0])))
        land("mnist", samples.mnist(storage.join(batch, "mnist-2"), seed=seed, offset=MNIST["n_train"], **MNIST))
        second = {m: follow.decided(m) + 1 for m in ("household_power_lgbm", "mnist_cnn")}
        follow.wait("retrained models decided", lambda: all(follow.decided(m) >= n for m, n in second.items()) or
                    bool(follow.failures), remaining())

        first_day = datetime.now(timezone.utc).date() - timedelta(days=TICK_DAYS + 1)
        days = [first_day + timedelta(days=i) for i in range(TICK_DAYS)]
        follow.say(f"3/3  a {TICK_DAYS}-partition tick backfill, {days[0]}..{days[-1]} (only the newest window trains)")
        for folder in samples.ticks(storage.join(batch, "ticks"), start=days[0], days=TICK_DAYS,
                                    ticks_per_day=TICKS_PER_DAY, seed=seed):
            land("ticks", folder)
        ticks_before = follow.decided("ticks_direction_lgbm")
        stack.backfill_ticks(days[0].isoformat(), days[-1].isoformat(), echo=follow.say, timeout=remaining())
        follow.wait("tick model decided", lambda: follow.decided("ticks_direction_lgbm") > ticks_before or
                    bool(follow.failures), remaining())
    except TimeoutError as exc:
        follow.say(f"stopped waiting: {exc}; stack logs in {settings.home / 'logs'}")
        follow.failures.append({"timeout": str(exc)})
    except KeyboardInterrupt:
        follow.say("interrupted")
        stack.down()
        return 130

    elapsed = time.monotonic() - follow.started
    rows = summary(ends.mlflow_url, ends.airflow_url)
    print_summary(rows, echo)
    report = {"chain_seconds": round(elapsed, 1), "models": rows, "failures": follow.failures,
              "airflow": ends.airflow_url, "mlflow": ends.mlflow_url}
    storage.write_bytes(str(settings.home / "demo-summary.json"), json.dumps(report, indent=2, default=str).encode())
    echo(f"\nchain finished in {elapsed:.0f}s; summary in {settings.home / 'demo-summary.json'}")
    for failure in follow.failures:
        echo(f"FAILED: {failure}")
    echo(f"Airflow UI {ends.airflow_url} (login {stack.ADMIN_USER}, password in {stack.password_file()})   "
         f"MLflow UI {ends.mlflow_url}")
    status = 1 if follow.failures else 0
    if exit_when_done:
        stack.down()
        return status
    echo("the stack stays up: browse the UIs; Ctrl-C stops it (or `retrain down` later)")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        echo("stopping the stack")
        stack.down()
    return status


if __name__ == "__main__":
    sys.exit(run(exit_when_done="--exit" in sys.argv))
