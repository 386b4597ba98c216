"""The time-series workload's steps (ticks): window -> gate -> features -> train -> evaluate -> log_candidate.

Backfill policy, enforced in :func:`resolve_window`: only the newest window trains, and each exact set of its
versions trains once. A run resolves the newest window when it starts, so the runs are coalesced: a
partition's commit asks for a run only when none is queued (:func:`training_request`; the queued one will
read the commit), runs are serialised (``max_active_runs=1``), and a run started while a backfill is still
committing newer partitions waits for them (:func:`newer_partition_arriving`). So a backfill of N partitions
creates a bounded number of runs, whatever N, and the newest window trains once, right after its commit; a
backfill that rebuilds only older partitions trains nothing. The promotion step never promotes a candidate
whose window ends before the current champion's (see :mod:`retrain.workloads.promote`).

The window is resolved once to explicit (partition, version, sha256) entries, recorded in the task's return
value and on the MLflow run (``data.window_versions``, ``data.window_digest``); every later step reads exactly
those immutable versions and checks their sha256, never "whatever build is there now".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from retrain import config, quality, snapshots, storage, tracking

WORKLOAD = "time_series_training"
DATASET = "ticks"
log = logging.getLogger(__name__)


def dataset_config(dataset: str = DATASET, overrides: Mapping[str, Any] | None = None) -> config.TickTrainingConfig:
    """The dataset's settings; a scheduled run takes no overrides (``adhoc_training`` validates its own)."""
    if overrides:
        raise config.ConfigError(f"{WORKLOAD}: runs of {dataset} take no overrides (got {dict(overrides)}); "
                                 "ad hoc settings go through adhoc_training")
    return config.dataset_settings(WORKLOAD, dataset)


def resolve(dataset: str, events, cfg: config.TickTrainingConfig, *, key: str | None = None,
            scheduled: bool = True) -> dict:
    """The window a run trains. ``scheduled``: the backfill policy of :func:`resolve_window` (``key``: the run's
    partition); otherwise the window a person names, ending at partition ``key`` (default: the newest), which
    may be older than the newest (:func:`named_window`)."""
    if scheduled:
        return resolve_window(key, events)
    return named_window(dataset, key, cfg)


def named_window(dataset: str, partition: str | None, cfg: config.TickTrainingConfig) -> dict:
    """The K committed partitions up to ``partition`` (default: the newest). Unlike scheduled runs, a manual
    run may train an older window: the backfill policy guards automatic training, and promotion still
    refuses windows older than the champion's."""
    from retrain.errors import SnapshotError
    from retrain.ingest import ticks as ingest_ticks
    from retrain.training import ticks

    available = ingest_ticks.partitions()
    if not available:
        raise SnapshotError(f"{dataset}: no committed partition to train on")
    end = partition or available[-1]
    if end not in available:
        raise SnapshotError(f"{dataset}: partition {end!r} has no committed snapshot (newest: {available[-3:]})")
    window = ticks.window(available, end, cfg)
    if len(window) < cfg.window_partitions:
        raise SnapshotError(f"{dataset}: window_partitions = {cfg.window_partitions} needs that many committed "
                            f"partitions up to {end} (observed {len(window)}: {window})")
    snaps = [snapshots.load(dataset, "", p) for p in window]  # each partition's current version, read once
    return {"partition": end, "train": True, "window": window, "versions": window_versions(snaps),
            "events": [s.event_extra() for s in snaps]}


def resolve_window(partition: str | None, events: list[Mapping[str, Any]] | None = None) -> dict:
    """The window this run trains on, as explicit (partition, version, sha256) entries, or why it must not train.

    Backfill policy: only the newest window (the K newest committed partitions) ever trains. The newest
    partition's run trains it; a run for another partition inside it (a corrected day) retrains it once the
    newest partition's current version was trained, with the version its triggering event named for that
    partition. A run whose partition lies outside the window, whose event's version is no longer current, or
    whose exact window versions were trained already, trains nothing.
    ``partition`` None (a run requested by a commit, see :func:`training_request`): the newest committed one.
    ``events``: the run's triggering ``ticks`` event extras (none for a requested or manual run).
    """
    from retrain.ingest import ticks as ingest_ticks

    cfg = dataset_config()
    committed = ingest_ticks.partitions()
    if partition is None:
        if not committed:
            return _skip("-", "no committed tick partition")
        partition = committed[-1]
    if partition not in committed:
        return _skip(partition, f"partition {partition} has no committed snapshot")
    newest = committed[-cfg.window_partitions:]
    if partition not in newest:
        return _skip(partition, f"superseded: partition {partition} lies outside the newest window "
                                f"{newest[0]}..{newest[-1]}; only the newest window trains (backfill policy)")
    if len(newest) < cfg.window_partitions:
        return _skip(partition, f"window needs {cfg.window_partitions} partitions up to {newest[-1]}, "
                                f"{len(newest)} committed")
    snaps = [snapshots.load(DATASET, "", p) for p in newest]  # each partition's current version, read once
    named = [e for e in events or [] if e.get("partition") == partition]
    if named:
        version = named[-1]["version"]
        mine = snaps[newest.index(partition)]
        if mine is None or mine.version != version:
            return _skip(partition, f"superseded: partition {partition} was rebuilt after this run's event "
                                    f"(event version {version}, current {mine.version if mine else None}); "
                                    "the newer version's run trains")
    if any(s is None for s in snaps):  # gc or a concurrent pointer move: resolve again on the next run
        return _skip(partition, f"partitions {newest} changed while the window was resolved")
    last = snaps[-1]
    if partition != last.partition and not _trained_with(last.partition, last.version):
        # the newest partition's run (queued before this one, or started by the freshness reconcile) reads
        # every current version when it resolves: training here too would train the window twice
        return _skip(partition, f"partition {partition} lies inside the newest window, whose newest partition "
                                f"{last.partition} (version {last.version}) was not trained yet: that partition's "
                                "run trains the window (backfill policy)")
    versions = window_versions(snaps)
    digest = window_digest(versions)
    trained = _trained_run(digest)
    if trained:
        return _skip(partition, f"window {newest[0]}..{newest[-1]} with exactly these versions was trained "
                                f"already (MLflow run {trained}); a window trains once")
    return {"partition": newest[-1], "trigger": partition, "train": True, "window": newest,
            "versions": versions, "window_digest": digest, "events": [s.event_extra() for s in snaps]}


def training_request(partition: str, queued_runs: int) -> str | None:
    """Why a commit of ``partition`` asks for no training run (None: ask for one).

    A queued run of the training DAG has not resolved its window yet: it reads the committed partitions when
    it starts, this commit included, so a second run would only queue behind it. Asking only when none is
    queued keeps a backfill of N partitions at a bounded number of runs (the running one and one queued),
    so the newest window never waits behind N older partitions' runs.
    """
    if queued_runs:
        return (f"partition {partition}: {queued_runs} {WORKLOAD} run(s) queued; the next one to start resolves "
                "the newest window, this commit included (runs are coalesced)")
    return None


def ready_to_resolve() -> bool:
    """The poke of ``time_series_training``'s ``wait_for_backfill``: True when no backfill is still committing
    partitions of the newest window (each wait is logged with its reason)."""
    reason = newer_partition_arriving()
    if reason:
        log.info("waiting: %s", reason)
    return reason is None


def newer_partition_arriving(*, now: float | None = None) -> str | None:
    """Why a run that is about to resolve the newest window should wait a moment (None: resolve now).

    A backfill commits its partitions one after another (a few at a time): a window resolved in the middle of
    it would train an intermediate window that the next commits supersede at once. While a partition that
    would fall inside the newest window still waits in ``landing/ticks/`` or in an ingest run's claim, and the
    newest window's latest commit is younger than ``backfill_settle_seconds``, more commits are on their way.
    A landed folder that no run will ingest delays a run by at most that long.
    """
    import time
    from datetime import datetime

    from retrain.ingest import ticks as ingest_ticks
    from retrain.settings import get_settings

    settle = config.load(WORKLOAD).backfill_settle_seconds
    committed = ingest_ticks.partitions()
    newest = committed[-dataset_config().window_partitions:]
    if not newest:
        return None
    pending = sorted(d for d in _pending_partitions(get_settings()) if d > newest[0])
    if not pending:
        return None
    latest = 0.0
    for snapshot in (snapshots.load(DATASET, "", p) for p in newest):
        try:
            created = str((snapshot.manifest if snapshot else {}).get("created_at") or "")
            latest = max(latest, datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
        except ValueError:
            continue
    age = (now or time.time()) - latest
    if age >= settle:
        return None
    return (f"partitions {pending[0]}..{pending[-1]} wait to be ingested and the newest window "
            f"{newest[0]}..{newest[-1]} changed {age:.0f} s ago (< backfill_settle_seconds {settle:g}): a backfill "
            "is still committing partitions of the newest window")


def _pending_partitions(settings) -> set[str]:
    """Tick partitions landed or claimed by an ingest run, not yet archived (their commit is on its way)."""
    from retrain.ingest import landing

    def keys(folder: str) -> set[str]:
        names = storage.listdir(folder) if storage.exists(folder) else []
        return {n.split("=", 1)[1] for n in names if n.startswith("date=")}

    found = keys(landing.landing_folder(DATASET))
    runs = settings.work("ingest")
    for run in storage.listdir(runs) if storage.exists(runs) else []:
        found |= keys(storage.join(runs, run, DATASET))
    return found


def _skip(partition: str, reason: str) -> dict:
    return {"partition": partition, "train": False, "reason": reason}


def window_versions(snaps: list[snapshots.Snapshot]) -> list[dict]:
    """The (partition, version, sha256) entries a run records for the partition versions it trains on."""
    return [{"partition": s.partition, "version": s.version, "sha256": s.sha256} for s in snaps]


def window_digest(versions: list[Mapping[str, str]]) -> str:
    """One digest naming a window's exact data: its (partition, version, sha256) entries."""
    import hashlib

    ordered = sorted(versions, key=lambda v: v["partition"])
    text = "".join(f"{v['partition']}\0{v['version']}\0{v['sha256']}\n" for v in ordered)
    return hashlib.sha256(text.encode()).hexdigest()


def _trained_run(digest: str) -> str | None:
    """The finished scheduled candidate run that trained exactly this window, if any (tag ``data.window_digest``)."""
    return _finished_candidate(f"tags.`data.window_digest` = '{digest}'")


def _trained_with(partition: str, version: str) -> str | None:
    """The finished scheduled candidate run whose window held this version of the partition, if any."""
    return _finished_candidate(f"tags.`data.window_versions` LIKE '%{partition}={version}%'")


def _finished_candidate(condition: str) -> str | None:
    """A finished scheduled candidate run of this workload matching an MLflow filter on its tags. Ad-hoc runs
    share the experiment but may use other settings: they do not count."""
    from retrain import tracking

    experiment = tracking.client().get_experiment_by_name(tracking.experiment_name(WORKLOAD, DATASET))
    if experiment is None:
        return None
    runs = tracking.client().search_runs([experiment.experiment_id], max_results=100,
                                         filter_string=f"{condition} and attributes.status = 'FINISHED'")
    scheduled = [r for r in runs
                 if r.data.tags.get("retrain.trigger") != "adhoc" and r.data.tags.get("retrain.model_uri")]
    return scheduled[0].info.run_id if scheduled else None


def window_snapshots(window: Mapping[str, Any]) -> list[snapshots.Snapshot]:
    """Exactly the versions the window recorded, each checked against its sha256 (SnapshotError otherwise):
    a rebuild committed since the window was resolved changes nothing this run reads."""
    from retrain.errors import SnapshotError

    entries = window.get("versions")
    if not entries:
        raise SnapshotError(f"ticks window {window.get('window')}: no recorded versions (rule: a training run "
                            "reads the (partition, version, sha256) entries resolve_window recorded)")
    return [snapshots.open_version(DATASET, e["partition"], e["version"], e["sha256"]) for e in entries]


def validate_partition(table, partition: str, feed: config.TickFeed, *,
                       report_dir: str | None = None) -> quality.GateReport:
    """One partition's ticks (any curated schema) against the suite's partition rules, with the feed's symbols,
    grids and bounds; each failure names its partition."""
    import dataclasses

    from retrain.data import tick_quality

    frame = tick_quality.quality_frame(table, partition, feed)
    report = quality.validate(DATASET, frame, version=partition, report_dir=report_dir,
                              parameters=tick_quality.suite_parameters(feed))
    return dataclasses.replace(report, failures=[f | {"partition": partition} for f in report.failures])


def gate(window: Mapping[str, Any], cfg: config.TickTrainingConfig, work: str) -> dict:
    """Validate every partition of the window (the suite's partition rules, one report each), then the window's
    prepared examples (its window rules, such as the target's balance); every failure raised together, each
    naming its partition (or the window), rule and observed value. A refusal names what no run can train now
    (the window, and each partition version that failed its own rules), for the freshness reconcile."""
    from retrain.data import ticks
    from retrain.errors import DataQualityError
    from retrain.training import ticks as tick_training

    storage.remove(storage.join(work, SPLIT_DONE))  # a split from an earlier try is judged again
    feed = config.feed(DATASET)
    span = f"{window['window'][0]}..{window['window'][-1]}"
    failures, summaries, rejected = [], [], [window_digest(window["versions"])[:16]]
    snaps = window_snapshots(window)  # verified once (remote files land checked in the shard cache)
    for snapshot in snaps:
        report = validate_partition(ticks.read_partition(snapshot), snapshot.partition, feed,
                                    report_dir=storage.join(work, "quality", snapshot.partition))
        summaries.append(report.summary())
        failures += report.failures
        rejected += [] if report.success else [snapshot.version]

    def refuse(found: list[dict]) -> DataQualityError:
        return DataQualityError(DATASET, span, found, storage.join(work, "quality"), what="window", rejects=rejected)

    # what training needs: the walk-forward split of the window's bars, as prepare makes it (DataQualityError
    # naming the minimum, min_train_examples, when the training days hold too few bars)
    try:
        train, valid, test = tick_training.prepare(snaps, cfg, session=_session(feed))
    except DataQualityError as exc:
        raise refuse(failures + exc.failures) from None
    except Exception:
        if not failures:
            raise
        log.warning("ticks window %s: no examples to validate (its partitions failed their rules)", span,
                    exc_info=True)
        raise refuse(failures) from None
    import pandas as pd

    examples = pd.concat([split[["label"]] for split in (train, valid, test)], ignore_index=True)
    report = quality.validate(DATASET, examples, version=span, scope=quality.WINDOW,
                              report_dir=storage.join(work, "quality", "window"))
    failures += [f | {"partition": f"window {span}"} for f in report.failures]
    if failures:
        raise refuse(failures)
    _write_split(work, window, cfg, train, valid, test)  # what the gate judged is what trains: prepare reuses it
    return {"verdict": "passed", "partitions": summaries, "window": report.summary(),
            "bars": {"train": len(train), "valid": len(valid), "test": len(test)}}


def _session(feed: config.TickFeed) -> tuple[str, str] | None:
    return None if feed.session is None else (feed.session.cut, feed.session.zone)


_SPLIT = ("train", "valid", "test")
SPLIT_DONE = "split.json"


def _split_key(window: Mapping[str, Any], cfg: config.TickTrainingConfig) -> dict:
    """What a split was made from: the window's exact versions and the settings (a split made from anything
    else is never reused)."""
    import hashlib

    return {"window_digest": window_digest(window["versions"]),
            "config_sha256": hashlib.sha256(cfg.model_dump_json().encode()).hexdigest(),
            "feed_session": list(_session(config.feed(DATASET)) or [])}


def _write_split(work: str, window: Mapping[str, Any], cfg: config.TickTrainingConfig, *frames) -> dict:
    for name, frame in zip(_SPLIT, frames):
        storage.write_frame(frame, storage.join(work, f"{name}.parquet"), index=False)
    counts = {name: len(frame) for name, frame in zip(_SPLIT, frames)}
    record = {"counts": counts, **_split_key(window, cfg)}
    storage.write_text(storage.join(work, SPLIT_DONE), json.dumps(record))  # last: the split is complete
    return counts


def prepare(window: Mapping[str, Any], cfg: config.TickTrainingConfig, work: str) -> dict:
    """Bars and features of the window, split train/valid/test, in the work folder: the split the gate wrote
    there when it passed, if it was made from exactly this window's versions and these settings (the window is
    then read once per run), else made here from the recorded versions."""
    from retrain.training import ticks

    done = storage.join(work, SPLIT_DONE)
    if storage.exists(done):
        record = json.loads(storage.read_text(done))
        if {k: record.get(k) for k in ("window_digest", "config_sha256", "feed_session")} == _split_key(window, cfg):
            return record["counts"]
        log.info("the split in %s was made from another window or other settings: made again", work)
    split = ticks.prepare(window_snapshots(window), cfg, session=_session(config.feed(DATASET)))
    return _write_split(work, window, cfg, *split)


def train(window: Mapping[str, Any], cfg: config.TickTrainingConfig, work: str) -> dict:
    """LightGBM on the work folder's train/valid features; the booster and its summary go back there."""
    from retrain.training import ticks

    model = ticks.train(storage.read_frame(storage.join(work, "train.parquet")),
                        storage.read_frame(storage.join(work, "valid.parquet")),
                        cfg)
    storage.write_text(storage.join(work, "model.txt"), model.booster.model_to_string())
    summary = model.summary() | {"feature_names": model.features, "up_fraction": model.up_fraction,
                                 "history": model.history}
    storage.write_text(storage.join(work, "train.json"), json.dumps(summary, default=float))
    return model.summary()


def _model(work: str):
    import lightgbm as lgb

    from retrain.training import ticks

    s = json.loads(storage.read_text(storage.join(work, "train.json")))
    return ticks.TrainedModel(booster=lgb.Booster(model_str=storage.read_text(storage.join(work, "model.txt"))),
                              features=s["feature_names"], up_fraction=s["up_fraction"],
                              best_iteration=s["best_iteration"], iterations=s["iterations"], seconds=s["seconds"])


def evaluate(window: Mapping[str, Any], cfg: config.TickTrainingConfig, work: str) -> dict:
    from retrain.training import ticks

    model = _model(work)
    test = storage.read_frame(storage.join(work, "test.parquet"))
    metrics, predictions = ticks.evaluate(model, test)
    storage.write_frame(predictions, storage.join(work, "test_predictions.parquet"), index=False)
    storage.write_frame(test[model.features + ["label"]], storage.join(work, "test_features.parquet"), index=False)
    storage.write_text(storage.join(work, "evaluate.json"), json.dumps(metrics, indent=2))
    return metrics


def lineage_data(window: Mapping[str, Any]) -> dict:
    """The window's last partition event, with the window's partitions and their exact versions."""
    return window["events"][-1] | {"partitions": window["window"], "versions": window.get("versions", [])}


def log_candidate(window: Mapping[str, Any], cfg: config.TickTrainingConfig, work: str, *,
                  coordinates: Mapping[str, Any], quality: Mapping[str, Any], tags: Mapping[str, str] | None = None,
                  description: str | None = None) -> dict:
    """Log the candidate run to MLflow and return the candidate asset event's extra."""
    from retrain.workloads import evaluation_metrics, log_candidate_run

    lineage = tracking.Lineage(**coordinates, data=lineage_data(window), quality=quality)
    metrics = evaluation_metrics(work)
    data = lineage.data
    description = description or (
        f"**{cfg.model}** candidate on the window {', '.join(data['partitions'])} (test day {data['partition']}), "
        f"trained by `{lineage.dag_id}` run `{lineage.run_id}`; quality gate **{lineage.quality.get('verdict')}**.\n\n"
        f"| | accuracy |\n|---|---|\n| LightGBM | {metrics['test_accuracy']:.4f} |\n"
        f"| majority class | {metrics['baseline_majority_accuracy']:.4f} |\n"
        f"| persistence | {metrics['baseline_persistence_accuracy']:.4f} |\n")
    return log_candidate_run(workload_name=WORKLOAD, dataset=DATASET, model=cfg.model, lineage=lineage,
                             log_body=lambda: _log_body(cfg, lineage, work, metrics), description=description,
                             tags=tags, data_extra={"partitions": data["partitions"], "window_end": data["partition"],
                                                    "versions": list(data.get("versions") or [])})


def _log_body(cfg: config.TickTrainingConfig, lineage: tracking.Lineage, work: str, metrics: dict) -> dict:
    import lightgbm
    import mlflow
    import numpy
    import pandas
    from mlflow.models import infer_signature

    mlflow.log_params(tracking.flatten(cfg.model_dump()))
    mlflow.log_metrics(metrics)
    mlflow.set_tag("data.window_end", lineage.data["partition"])
    versions = lineage.data.get("versions") or []
    mlflow.set_tags({"data.window_versions": ",".join(f"{v['partition']}={v['version']}" for v in versions),
                     "data.window_digest": window_digest(versions) if versions else ""})
    summary = json.loads(storage.read_text(storage.join(work, "train.json")))
    history = {}
    for key, values in summary.get("history", {}).items():  # {"valid_binary_logloss": [...]} or nested by split
        if isinstance(values, dict):
            history |= {f"{key}_{metric}": series for metric, series in values.items()}
        else:
            history[key] = values
    tracking.log_metric_history(history, prefix="iter_")
    tracking.log_work_files(work, ["evaluate.json", "test_predictions.parquet", "test_features.parquet", "train.json"],
                            "evaluation")
    quality_dir = storage.join(work, "quality")
    for partition in storage.listdir(quality_dir):
        tracking.log_work_files(storage.join(quality_dir, partition), tracking.QUALITY_REPORTS, f"quality/{partition}",
                                optional=True)
    model = _model(work)
    test = storage.read_frame(storage.join(work, "test_features.parquet"))
    example = test[model.features].head(5)
    info = mlflow.lightgbm.log_model(
        model.booster, name="model", signature=infer_signature(example, model.booster.predict(example)),
        input_example=example,
        pip_requirements=[f"mlflow=={mlflow.__version__}", f"lightgbm=={lightgbm.__version__}",
                          f"numpy=={numpy.__version__}", f"pandas=={pandas.__version__}"],
    )
    return {"model_uri": info.model_uri, "metrics": metrics}
