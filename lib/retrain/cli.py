"""``retrain``: run the embedded stack and the demo, or any step of the pipeline without a scheduler.

Every sub-command has ``--help``. Commands that touch Airflow put the embedded stack's environment in place
first (see :mod:`retrain.environment`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from retrain import catalog, environment
from retrain.settings import get_settings


EXIT_INFRASTRUCTURE, EXIT_USAGE, EXIT_DATA = 1, 2, 3  # usage/config errors 2; data refused 3; services 1
# the names of tick_generator.PROFILES, without importing numpy and pyarrow to build the parser
TICK_PROFILES = ("equities", "crypto", "fx-quotes")


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

    stack.up(args.components, timeout=args.timeout)
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
    _print_freshness()
    return 0 if all(v == "healthy" for v in report.values()) else 1


def _print_freshness() -> None:
    """Per dataset: the newest snapshot, the newest trained one and the lag (design contract 8)."""
    from retrain import freshness

    rows = freshness.report(active=_run_active_via_api())
    bound = freshness.policy().bound_seconds
    print(f"\nfreshness (F = {bound:.0f} s)")
    print(f"{'dataset':<16} {'newest snapshot':<18} {'data time':<30} {'newest trained':<18} {'lag s':>6}  state")
    for r in rows:
        print(f"{r['dataset']:<16} {r['newest']:<18} {r['newest_data']:<30} {r['newest_trained']:<18} "
              f"{r['lag_s']!s:>6}  {r['state']}")


def _run_active_via_api():
    """``active(dag_id, run_id)`` through the REST API, so a claim whose run ended shows as such; None (every
    claim counts as held) when the stack does not answer."""
    import urllib.error

    from retrain import stack

    try:
        api = stack.AirflowApi()
    except Exception:  # stack down: the report still reads the ledger and MLflow
        return None

    def active(dag_id: str, run_id: str) -> bool:
        try:
            return api.get(f"dags/{dag_id}/dagRuns/{run_id}").get("state") in ("queued", "running")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            return True  # unknown: count it as held rather than call the snapshot abandoned

    return active


def cmd_sample_data(args) -> int:
    from retrain import samples

    out = str(args.output)
    if args.kind == "power":
        rows = args.rows if args.days is None else round(args.days * 1440)
        start = datetime.fromisoformat(args.start)
        samples.power(out, rows=rows, start=start, seed=args.seed, level=args.level)
        end = start + timedelta(minutes=rows)
        print(f"wrote {out} ({rows} one-minute readings from {start:%Y-%m-%d %H:%M}); "
              f"the next increment of this household: --start {end:%Y-%m-%dT%H:%M} --seed {args.seed}")
    elif args.kind == "mnist":
        samples.mnist(out, n_train=args.train, n_test=args.test, seed=args.seed, offset=args.offset, gz=args.gz)
        print(f"wrote MNIST drop {out} ({args.train} train + {args.test} test images)")
    elif args.kind == "cifar10":
        samples.cifar10(out, n_per_batch=args.per_batch, n_batches=args.batches, n_test=args.test, seed=args.seed,
                        offset=args.offset)
        print(f"wrote CIFAR-10 drop {out} ({args.batches} x {args.per_batch} train + {args.test} test images)")
    else:
        from datetime import date

        symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
        folders = samples.ticks(out, start=date.fromisoformat(args.start), days=args.days,
                                ticks_per_day=args.ticks_per_day, symbols=symbols, seed=args.seed,
                                profile=args.profile, stale_quotes_after=args.stale_quotes_after)
        closed = args.days - len(folders)
        print(f"wrote {len(folders)} {args.profile} tick partitions under {out} ({args.ticks_per_day} ticks/day"
              + (f"; none for the {closed} days the market is closed)" if closed else ")")
              + (f"; land each with `retrain land ticks {folders[0]}`" if folders else ""))
        advice = samples.tick_feed_advice(args.profile, symbols)
        if advice:
            print(advice, end="")
    return 0


def cmd_land(args) -> int:
    from retrain import storage
    from retrain.errors import LandingPathError
    from retrain.ingest import landing

    source = str(args.path)
    if not storage.exists(source):
        print(f"retrain land: source {source} does not exist (rule: land an existing file or folder)", file=sys.stderr)
        return 2
    try:
        location = landing.land(args.dataset, source, args.name)
    except LandingPathError as exc:  # nothing was written: the name is checked before any copy
        hint = "" if args.name is not None else "; pass --name NAME to land it under another name"
        print(f"retrain land: {exc}{hint}", file=sys.stderr)
        return 2
    print(f"landed {args.path} as {location}")
    return 0


def _exit_code(exc: BaseException) -> int | None:
    """The exit code :func:`main` gives an error (None: a bug, whose traceback a report needs)."""
    from retrain.errors import (CandidateError, ConfigError, DataFormatError, DataQualityError, LandingPathError,
                                RetrainError, SnapshotError, UsageError, is_infrastructure_error)

    if isinstance(exc, (ConfigError, LandingPathError, UsageError, CandidateError)):
        return EXIT_USAGE  # a setting, name or argument the user must fix
    if isinstance(exc, (DataQualityError, DataFormatError, SnapshotError)):
        return EXIT_DATA  # the data is refused: the message says why
    if isinstance(exc, RetrainError) or is_infrastructure_error(exc):
        return EXIT_INFRASTRUCTURE  # a service, or a state another try may get past (a run not finished yet)
    return None


def _one_line(exc: BaseException) -> str:
    """An error's message on one line (a quality report's failures joined by ``;``)."""
    parts = [part.strip().removeprefix("- ") for part in str(exc).splitlines() if part.strip()]
    return "; ".join(part.removesuffix(":") if i < len(parts) - 1 else part for i, part in enumerate(parts))


def cmd_ingest(args) -> int:
    """Ingest landed arrivals of a dataset with its catalog ingest step (every pending one, or the one named)."""
    from retrain.ingest import landing

    ingest = catalog.load(catalog.dataset(args.dataset).ingest)
    run_id = args.run_id or f"cli__{datetime.now().strftime('%Y%m%dT%H%M%S')}"
    names = [args.name] if args.name else landing.pending(args.dataset)
    if not names:
        print(f"retrain ingest: nothing landed for {args.dataset} in {landing.landing_folder(args.dataset)}",
              file=sys.stderr)
    status = 0
    for name in names:
        try:
            result = ingest(args.dataset, name, run_id)
            _print({"file": name, "status": result.status, "event": result.snapshot.event_extra()})
        except Exception as exc:  # report every arrival, then fail with the first failure's code
            code = _exit_code(exc)
            if code is None:
                raise
            print(f"retrain ingest: {name}: {_one_line(exc)}", file=sys.stderr)
            status = status or code
    return status


def _resolved(args):
    """(workload, config, data) of the snapshot or window the command names (default: the newest)."""
    from retrain import workloads
    from retrain.errors import SnapshotError, UsageError

    found = workloads.for_dataset(args.dataset)
    cfg = found.dataset_config(args.dataset)
    try:
        return found, cfg, found.resolve(args.dataset, [], cfg, key=args.key, scheduled=False)
    except SnapshotError as exc:  # nothing committed matches what the command names: exit 2, not "data refused"
        raise UsageError(str(exc)) from None


def _data_key(data) -> str:
    return str(data.get("version") or data.get("partition") or "-")


def cmd_gate(args) -> int:
    found, cfg, data = _resolved(args)
    work = get_settings().work("cli", args.dataset, args.key or _data_key(data))
    _print(found.gate(data, cfg, work))
    return 0


def cmd_train(args) -> int:
    from retrain import workloads

    _, cfg, data = _resolved(args)
    run_id = f"cli__{datetime.now().strftime('%Y%m%dT%H%M%S')}"
    work = get_settings().training_work("cli", run_id, args.dataset)
    _print(workloads.train_candidate(args.dataset, data, cfg, work, coordinates={"dag_id": "cli", "run_id": run_id}))
    return 0


def cmd_promote(args) -> int:
    """Judge a candidate against the champion as ``promote_models`` does (register and alias when it wins)."""
    from types import SimpleNamespace

    from retrain import stack
    from retrain.workloads import promote

    event = promote.candidate_event(args.model, args.run_id)
    run_id = f"cli__{datetime.now().strftime('%Y%m%dT%H%M%S')}"
    decision = promote.judge(event, {"dag_id": "cli", "run_id": run_id})
    _print({k: decision.get(k) for k in ("model", "candidate_run_id", "outcome", "version", "compared_champion",
                                         "previous_champion", "champion_model_uri", "reasons")})
    if decision.get("champion_event"):
        move = SimpleNamespace(champion=decision["version"], previous_champion=decision.get("previous_champion"),
                               entry={"action": "promote", "by": "cli", "reason": "; ".join(decision["reasons"])})
        try:
            stack.emit_champion_event(args.model, move, run_id=decision.get("candidate_run_id"),
                                      metrics=decision.get("metrics"))
            print(f"{args.model}.champion event emitted", file=sys.stderr)
        except stack.StackDown as exc:
            print(f"warning: {args.model}.champion event not emitted: {exc}", file=sys.stderr)
    return 0


def cmd_rollback(args) -> int:
    from retrain import registry, stack

    try:
        move = registry.rollback(args.model, by=args.by, reason=args.reason, expect=args.expect)
    except registry.RegistryError as exc:
        print(f"rollback refused: {exc}", file=sys.stderr)
        return 2
    done = "completed an interrupted rollback: " if move.repaired else ""
    print(f"{args.model}: {done}champion is version {move.champion} again "
          f"(version {move.previous_champion} rolled back: {move.entry.get('reason')})")
    try:
        stack.emit_champion_event(args.model, move)
        print(f"{args.model}.champion event emitted")
    except stack.StackDown as exc:
        print(f"warning: {args.model}.champion event not emitted: {exc}", file=sys.stderr)
    return 0


def cmd_history(args) -> int:
    from retrain import registry

    entries = registry.history(args.model)
    if entries is None:
        print(f"{args.model} has no registered version yet: nothing has been promoted, so there is no history",
              file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        _print(entries)
        return 0
    print(f"{'when (UTC)':<26} {'action':<9} {'champion':>8} {'previous':>8}  by / reason")
    for e in entries:
        print(f"{e['at']:<26} {e['action']:<9} {e.get('champion')!s:>8} {e.get('previous_champion')!s:>8}  "
              f"{e.get('by')}: {e.get('reason', '')[:100]}")
    return 0


def cmd_decision(args) -> int:
    from retrain import decisions, promotion

    if (args.version is None) == (args.run is None):
        print(f"retrain decision: {args.model}: give a VERSION or --run RUN_ID (one of them)", file=sys.stderr)
        return 2
    try:
        replay = decisions.replay(args.model, args.version, run_id=args.run)
    except decisions.DecisionRecordError as exc:
        print(f"retrain decision: {exc}", file=sys.stderr)
        return 2
    d, p = replay.decision, replay.policy
    subject = f"version {replay.version} (candidate run {replay.run_id})" if replay.version else f"run {replay.run_id}"
    print(f"{replay.model} {subject}: recomputed from {decisions.OUTCOMES} and {decisions.RECORD} alone")
    sized = f" (needs n ≥ {p.required_n} at {p.planning()})" if p.required_n is not None else ""
    print(f"policy: {p.primary_metric} ({p.direction}), test {p.test}, confidence {p.confidence}, "
          f"min_improvement {p.min_improvement}{sized}, bootstrap {p.bootstrap_samples} resamples, seed {p.seed}")
    print(f"decision: {d.outcome}")
    if replay.evaluation_set:
        print(f"evaluation set: {replay.evaluation_set.get('label')}")
    for reason in d.reasons:
        print(f"  - {reason}")
    c = d.comparison
    if c is not None:
        level = round(p.confidence * 100)
        print(f"n={c.n}  Δ {c.delta:+.6g}  {level}% CI [{c.ci_low:+.6g}, {c.ci_high:+.6g}]  p={c.p_value:.6g}  "
              f"MDE {c.mde:.6g} at {promotion.TARGET_POWER:.0%} power  powered: {replay.recomputed.get('powered')}  "
              f"(against the {c.against})")
    for note in replay.notes:
        print(f"note: {note}")
    if replay.matches:
        print(f"matches the recorded decision ({len(replay.recorded)} tags identical)")
        return 0
    print("DOES NOT MATCH the recorded decision:")
    prefix = "decision." if replay.version else "promotion."
    for key, recorded, recomputed in replay.mismatches:
        print(f"  {prefix}{key}: recorded {recorded!r}, recomputed {recomputed!r}")
    return 1


def cmd_backfill(args) -> int:
    from retrain import stack

    try:
        result = stack.backfill_ticks(args.start, args.end, max_active_runs=args.max_active_runs,
                                      timeout=args.timeout)
    except stack.BackfillRefused as exc:
        print(f"retrain backfill: refused: {exc}", file=sys.stderr)
        return 3
    except TimeoutError as exc:  # Airflow did not complete it in time: its runs go on
        print(f"retrain backfill: {exc}", file=sys.stderr)
        return 1
    failed = result["states"].get("failed", 0)
    print(f"done: backfill {result['backfill_id']} complete at {result['completed_at']}: "
          f"{len(result['partitions'])} partitions, {failed} failed")
    return 1 if failed else 0


def cmd_gc(args) -> int:
    from retrain import config
    from retrain.ingest import ticks

    keep = args.keep if args.keep is not None else config.load("ingest").retention.tick_versions
    removed = ticks.gc(keep, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for location in removed:
        print(f"{verb} {location}")
    print(f"{verb} {len(removed)} old tick version(s) (curated and raw); kept per partition the {keep} newest, "
          "the current one and the raw files that built them")
    return 0


def cmd_migrate(args) -> int:
    from retrain.ingest import power

    lines = power.migrate()
    for line in lines:
        if line["status"] == "migrated":
            print(f"snapshot {line['from']} -> series snapshot {line['to']}: {line['rows_added']} readings added, "
                  f"{line['rows_corrected']} corrected")
        else:
            print(f"snapshot {line['from']}: {line['status']} in the series (snapshot {line['to']})")
    migrated = sum(line["status"] == "migrated" for line in lines)
    print(f"migrated {migrated} of {len(lines)} snapshot(s) written before the series into it; they stay where "
          "they are and readable; nothing was deleted")
    return 0


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (the current version always stays), got {value}")
    return value


def cmd_demo(args) -> int:
    from retrain import demo

    return demo.run(exit_when_done=args.exit, timeout=args.timeout)


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
    p.add_argument("components", nargs="*", metavar="COMPONENT",
                   help="start only these (e.g. scheduler triggerer); default: every component of this host")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for health")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop exactly the processes `up` started")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="health of each stack component; per dataset, the newest snapshot, the "
                                      "newest trained one and the lag")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("sample-data", help="write sample data in the real on-disk formats (power, mnist, cifar10, ticks)")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    k = kinds.add_parser("power", help="a UCI household_power_consumption.txt-format file")
    k.add_argument("--rows", type=int, default=90 * 1440, help="one-minute readings (full UCI file: 2075259)")
    k.add_argument("--days", type=float, help="days of one-minute readings (instead of --rows)")
    k.add_argument("--start", default="2006-12-16T17:24",
                   help="first timestamp (ISO); a file starting where the last one ended is the next increment")
    k.add_argument("--level", type=float, default=1.0, help="consumption scale (a different household)")
    k = kinds.add_parser("mnist", help="an MNIST drop folder (four IDX files)")
    k.add_argument("--train", type=int, default=6000, help="training images")
    k.add_argument("--test", type=int, default=1000, help="test images")
    k.add_argument("--offset", type=int, default=0, help="continue an earlier batch of this many images")
    k.add_argument("--gz", action="store_true", help="gzip the files, as the original download")
    k = kinds.add_parser("cifar10", help="a CIFAR-10 drop folder (binary version)")
    k.add_argument("--per-batch", type=int, default=1000, help="images per data_batch_N.bin")
    k.add_argument("--batches", type=int, default=1, choices=range(1, 6), metavar="1-5")
    k.add_argument("--test", type=int, default=300, help="images in test_batch.bin")
    k.add_argument("--offset", type=int, default=0, help="continue an earlier batch of this many images")
    k = kinds.add_parser("ticks", help="tick partitions: OUTPUT/date=YYYY-MM-DD/ticks.csv per day")
    k.add_argument("--start", required=True, help="first partition date, YYYY-MM-DD")
    k.add_argument("--days", type=int, default=1)
    k.add_argument("--profile", choices=TICK_PROFILES, default="equities",
                   help="the raw shape: equities (trades with quotes, the default), crypto (24 h of trades with "
                        "fractional sizes, trade ids and venues, and quote rows), fx-quotes (quote-only FX sessions "
                        "on a New York clock without an offset); prints the feed settings it needs when they differ "
                        "from configs/feeds.yaml")
    k.add_argument("--symbols", help="comma-separated (default: the profile's, e.g. AAPL,MSFT,GOOG,AMZN)")
    k.add_argument("--ticks-per-day", type=int, default=200_000, help="density (millions are fine)")
    k.add_argument("--stale-quotes-after", type=float, metavar="MINUTES",
                   help="crypto: the quotes stop updating this long into each day while the trades go on")
    for k in kinds.choices.values():
        k.add_argument("--seed", type=int, default=0)
        k.add_argument("--output", "-o", type=Path, required=True)
        k.set_defaults(func=cmd_sample_data)

    p = sub.add_parser("land", help="copy a file into the landing zone atomically")
    p.add_argument("dataset", choices=list(catalog.DATASETS))
    p.add_argument("path", type=Path)
    p.add_argument("--name", help="plain file name in the landing zone, no path, not hidden (default: the source's)")
    p.set_defaults(func=cmd_land)

    datasets = list(catalog.DATASETS)
    p = sub.add_parser("ingest", help="ingest landed arrivals of a dataset (every pending one, or NAME; no scheduler)")
    p.add_argument("dataset", choices=datasets)
    p.add_argument("name", nargs="?", help="one landed file, drop folder or partition (YYYY-MM-DD); default: all")
    p.add_argument("--run-id")
    p.set_defaults(func=cmd_ingest)

    key_help = "snapshot VERSION, or for a partitioned dataset (ticks) the window's last PARTITION; default: newest"
    p = sub.add_parser("gate", help="run the quality gate on a snapshot or window (no scheduler)")
    p.add_argument("dataset", choices=datasets)
    p.add_argument("key", nargs="?", metavar="VERSION|PARTITION", help=key_help)
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("train", help="gate, prepare, train, evaluate and log a candidate (no scheduler)")
    p.add_argument("dataset", choices=datasets)
    p.add_argument("key", nargs="?", metavar="VERSION|PARTITION", help=key_help)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("promote", help="judge a candidate against the champion; register and alias it when it wins")
    p.add_argument("model", choices=list(catalog.MODELS))
    p.add_argument("run_id", nargs="?", metavar="RUN_ID", help="the candidate's MLflow run (default: the newest)")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("backfill", help="rebuild a range of tick partitions on the running stack")
    p.add_argument("dataset", choices=["ticks"])
    p.add_argument("start", help="first partition, YYYY-MM-DD")
    p.add_argument("end", help="last partition, YYYY-MM-DD")
    p.add_argument("--max-active-runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for Airflow to complete it")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("gc", help="delete old versions of tick partitions (curated and raw), keeping a retention")
    p.add_argument("dataset", choices=["ticks"])
    p.add_argument("--keep", type=_at_least_one, metavar="N",
                   help="newest versions kept per partition (default: configs/ingest.yaml retention.tick_versions)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("migrate", help="fold household power snapshots written before the growing series into it")
    p.add_argument("dataset", choices=["household_power"])
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("rollback", help="move a model's champion alias back to previous_champion")
    p.add_argument("model", help="registered model name, e.g. household_power_lgbm")
    p.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    p.add_argument("--by", help="who (default: the current user)")
    p.add_argument("--expect", metavar="VERSION",
                   help="roll back only if VERSION is the champion in service (compare-and-set)")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("history", help="which version was champion when (the alias audit trail)")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("decision", help="recompute a promotion decision from its logged outcomes and check it "
                                        "against what the version recorded (exit 0 same, 1 differs, 2 cannot)")
    p.add_argument("model", help="registered model name, e.g. mnist_cnn")
    p.add_argument("version", nargs="?", help="model version (a registered candidate)")
    p.add_argument("--run", metavar="RUN_ID", help="a candidate run instead (e.g. a rejected one: no version)")
    p.set_defaults(func=cmd_decision)

    p = sub.add_parser("demo", help="start the stack, land all four datasets, follow the chain live, summarise")
    p.add_argument("--exit", action="store_true", help="stop the stack and exit after the summary (automation)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds the whole chain may take")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from retrain.errors import is_infrastructure_error

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        environment.apply()
        return args.func(args)
    except Exception as exc:
        code = _exit_code(exc)
        if code is None:
            raise  # a bug: its traceback is what a report needs
        if code == EXIT_USAGE:  # a setting, name or argument the user must fix
            print(f"retrain {args.command}: {_one_line(exc)}", file=sys.stderr)
        elif code == EXIT_DATA:  # the data is refused: the message says why (and where the quality report is)
            print(f"retrain {args.command}: data refused: {_one_line(exc)}", file=sys.stderr)
        elif not is_infrastructure_error(exc):  # raised on purpose: its message says what to wait for
            print(f"retrain {args.command}: {_one_line(exc)}", file=sys.stderr)
        else:
            print(f"retrain {args.command}: a service is unreachable or failed ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else exc!r}); try again once it is back", file=sys.stderr)
        return code
    finally:
        if args.verbose:
            print(f"({time.perf_counter() - started:.1f}s)", file=sys.stderr)
