"""``retrain``: run any step of the pipeline without a scheduler, or the demo.

Every sub-command has ``--help``. Commands that touch Airflow put the embedded stack's environment in place
first (see :mod:`retrain.environment`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime
from pathlib import Path

from retrain import environment
from retrain.settings import get_settings


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_env(args) -> int:
    for key, value in environment.airflow_environment().items():
        print(f"export {key}='{value}'")
    return 0


def cmd_setup(args) -> int:
    from retrain import stack

    stack.setup(quiet=args.quiet)
    return 0


def cmd_up(args) -> int:
    from retrain import stack

    stack.up(timeout=args.timeout)
    return 0


def cmd_down(args) -> int:
    from retrain import stack

    stopped = stack.down()
    print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    return 0


def cmd_status(args) -> int:
    from retrain import stack

    report = stack.health()
    ends = stack.endpoints()
    for component, state in report.items():
        print(f"{component:<14} {state}")
    print(f"Airflow {ends.airflow_url}   MLflow {ends.mlflow_url}")
    return 0 if all(v == "healthy" for v in report.values()) else 1


def cmd_sample_data(args) -> int:
    from retrain import storage

    if args.kind == "power":
        from retrain.data.power import generate_power

        data = generate_power(args.rows, start=datetime.fromisoformat(args.start), seed=args.seed, level=args.level)
    else:  # argparse restricts the choices
        raise AssertionError(args.kind)
    storage.write_bytes(str(args.output), data)
    print(f"wrote {args.output} ({len(data) / 1e6:.1f} MB, {args.rows} rows)")
    return 0


def cmd_land(args) -> int:
    from retrain.ingest import landing

    location = landing.land(args.dataset, str(args.path), args.name)
    print(f"landed {args.path} as {location}")
    return 0


def cmd_ingest(args) -> int:
    from retrain.ingest import landing, power

    if args.dataset != "household_power":
        print(f"ingest of {args.dataset} is not available yet", file=sys.stderr)
        return 2
    run_id = args.run_id or f"cli__{datetime.now().strftime('%Y%m%dT%H%M%S')}"
    status = 0
    for name in landing.pending(args.dataset):
        try:
            result = power.ingest_file(name, run_id)
            _print({"file": name, "status": result.status, "event": result.snapshot.event_extra()})
        except Exception as exc:  # report every file, then fail
            print(f"{name}: {exc}", file=sys.stderr)
            status = 1
    return status


def cmd_gate(args) -> int:
    from retrain import snapshots
    from retrain.workloads import tabular

    snapshot = snapshots.load(args.dataset, args.version)
    if snapshot is None:
        print(f"no {args.dataset} snapshot {args.version}", file=sys.stderr)
        return 2
    work = get_settings().work("cli", args.dataset, args.version)
    _print(tabular.gate(snapshot.event_extra(), work))
    return 0


def cmd_train(args) -> int:
    from retrain import snapshots, tracking
    from retrain.workloads import tabular

    snapshot = snapshots.load(args.dataset, args.version)
    if snapshot is None:
        print(f"no {args.dataset} snapshot {args.version}", file=sys.stderr)
        return 2
    run_id = f"cli__{datetime.now().strftime('%Y%m%dT%H%M%S')}"
    event = snapshot.event_extra()
    work = get_settings().training_work("cli", run_id, args.dataset)
    gate = tabular.gate(event, work)
    tabular.prepare(event, work)
    tabular.train(args.dataset, work)
    tabular.evaluate(args.dataset, work)
    _print(tabular.log_candidate(tracking.Lineage(dag_id="cli", run_id=run_id, data=event, quality=gate), work))
    return 0


def cmd_rollback(args) -> int:
    from retrain import registry

    try:
        champion, rolled_back = registry.rollback(args.model, by=args.by, reason=args.reason)
    except registry.RegistryError as exc:
        print(f"rollback refused: {exc}", file=sys.stderr)
        return 2
    print(f"{args.model}: champion is version {champion} again (version {rolled_back} rolled back: {args.reason})")
    return 0


def cmd_history(args) -> int:
    from retrain import registry

    entries = registry.history(args.model)
    if args.json:
        _print(entries)
        return 0
    print(f"{'when (UTC)':<26} {'action':<9} {'champion':>8} {'previous':>8}  by / reason")
    for e in entries:
        print(f"{e['at']:<26} {e['action']:<9} {str(e.get('champion')):>8} {str(e.get('previous_champion')):>8}  "
              f"{e.get('by')}: {e.get('reason', '')[:100]}")
    return 0


def cmd_backfill(args) -> int:
    from retrain import stack

    result = stack.backfill_ticks(args.start, args.end, max_active_runs=args.max_active_runs)
    failed = result["states"].get("failed", 0)
    print(f"done: {len(result['partitions'])} partitions, {failed} failed")
    return 1 if failed else 0


def cmd_demo(args) -> int:
    from retrain import demo

    return demo.run_power_slice(rows=args.rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retrain", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("env", help="print the embedded stack's environment as shell exports")
    p.set_defaults(func=cmd_env)

    p = sub.add_parser("setup", help="migrate the Airflow metadata DB and create the pools (idempotent)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("up", help="start the embedded stack (Airflow + MLflow on 127.0.0.1) in the background")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for health")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop exactly the processes `up` started")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="health of each stack component")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("sample-data", help="write sample data in the real on-disk format")
    p.add_argument("kind", choices=["power"], help="which dataset format")
    p.add_argument("--rows", type=int, default=90 * 1440, help="one-minute readings (full UCI file: 2075259)")
    p.add_argument("--start", default="2006-12-16T17:24", help="first timestamp (ISO)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--level", type=float, default=1.0, help="consumption scale (a different household)")
    p.add_argument("--output", "-o", type=Path, required=True)
    p.set_defaults(func=cmd_sample_data)

    p = sub.add_parser("land", help="copy a file into the landing zone atomically")
    p.add_argument("dataset", choices=["household_power", "mnist", "cifar10", "ticks"])
    p.add_argument("path", type=Path)
    p.add_argument("--name", help="file name in the landing zone (default: the source's)")
    p.set_defaults(func=cmd_land)

    p = sub.add_parser("ingest", help="ingest every landed file of a dataset (no scheduler)")
    p.add_argument("dataset", choices=["household_power"])
    p.add_argument("--run-id")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("gate", help="run the quality gate on a snapshot (no scheduler)")
    p.add_argument("dataset", choices=["household_power"])
    p.add_argument("version")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("train", help="gate, train, evaluate and log a candidate for a snapshot (no scheduler)")
    p.add_argument("dataset", choices=["household_power"])
    p.add_argument("version")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("backfill", help="rebuild a range of tick partitions on the running stack")
    p.add_argument("dataset", choices=["ticks"])
    p.add_argument("start", help="first partition, YYYY-MM-DD")
    p.add_argument("end", help="last partition, YYYY-MM-DD")
    p.add_argument("--max-active-runs", type=int, default=3)
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("rollback", help="move a model's champion alias back to previous_champion")
    p.add_argument("model", help="registered model name, e.g. household_power_lgbm")
    p.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    p.add_argument("--by", help="who (default: the current user)")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("history", help="which version was champion when (the alias audit trail)")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("demo", help="run the household-power slice end to end on the embedded default")
    p.add_argument("--rows", type=int, default=90 * 1440, help="size of the sample file")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    environment.apply()
    started = time.perf_counter()
    try:
        return args.func(args)
    finally:
        if args.verbose:
            print(f"({time.perf_counter() - started:.1f}s)", file=sys.stderr)
