"""The data plane on S3 (moto server): ``RETRAIN_DATA_ROOT=s3://…`` end to end at library level, S3
notifications routed from the real SQS queue, the sweep, the SQS watcher's trigger, and the router and ingest
DAGs in-process. Same code as the local profile; only the environment differs."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from retrain import storage
from retrain.settings import get_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DAYS = 40


@pytest.fixture(scope="module")
def power_file() -> bytes:
    from retrain.data.power import generate_power

    return generate_power(DAYS * 1440, seed=7)


def _land(tmp_path: Path, dataset: str, name: str, data: bytes | dict[str, bytes]) -> str:
    from retrain.ingest import landing

    source = tmp_path / name
    if isinstance(data, dict):
        source.mkdir()
        for file_name, content in data.items():
            (source / file_name).write_bytes(content)
    else:
        source.write_bytes(data)
    return landing.land(dataset, str(source))


def _keys(services, prefix: str) -> list[str]:
    pages = services.s3.get_paginator("list_objects_v2").paginate(Bucket=services.bucket, Prefix=f"data/{prefix}")
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def generate_power(rows: int, seed: int) -> bytes:
    from retrain.data.power import generate_power as generate

    return generate(rows, seed=seed)


def _bodies(services) -> list[str]:
    return [m["Body"] for m in services.drain(wait_seconds=1)]


# --- storage -------------------------------------------------------------------------------------------------

def test_storage_primitives_on_s3(s3_env):
    root = get_settings().data_root
    assert root.startswith("s3://") and get_settings().is_remote_data
    storage.write_text(storage.join(root, "t/a/one.txt"), "1")
    storage.write_bytes(storage.join(root, "t/a/sub/two.bin"), b"\x00\x01")
    assert storage.exists(storage.join(root, "t/a")) and storage.isdir(storage.join(root, "t/a"))
    assert not storage.isdir(storage.join(root, "t/a/one.txt")) and not storage.exists(storage.join(root, "t/none"))
    assert storage.listdir(storage.join(root, "t/a")) == ["one.txt", "sub"]
    assert storage.size(storage.join(root, "t/a/sub/two.bin")) == 2
    with storage.open_read(storage.join(root, "t/a/one.txt")) as handle:
        handle.seek(0)
        assert handle.read() == b"1"
    storage.move(storage.join(root, "t/a"), storage.join(root, "t/b"))  # a folder: copy every object, then delete
    assert not storage.exists(storage.join(root, "t/a"))
    assert [f.location.rsplit("/t/", 1)[1] for f in storage.list_files(storage.join(root, "t"))] == ["b/one.txt", "b/sub/two.bin"]
    with pytest.raises(FileNotFoundError):
        storage.move(storage.join(root, "t/a"), storage.join(root, "t/c"))
    storage.remove(storage.join(root, "t"), recursive=True)
    assert storage.listdir(storage.join(root, "t")) == []


def test_an_interrupted_move_is_finished_by_repeating_it(s3_env, monkeypatch):
    """Copy-then-delete: a crash after the copies and before the delete leaves the source; the retry completes."""
    root = get_settings().data_root
    for name in ("x.bin", "y.bin"):
        storage.write_bytes(storage.join(root, "src", name), name.encode())
    store = storage._store()
    real_delete = store.delete
    monkeypatch.setattr(store, "delete", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("worker lost")))
    with pytest.raises(ConnectionError):
        storage.move(storage.join(root, "src"), storage.join(root, "dst"))
    assert storage.listdir(storage.join(root, "src")) == ["x.bin", "y.bin"]  # nothing lost
    monkeypatch.setattr(store, "delete", real_delete)
    storage.move(storage.join(root, "src"), storage.join(root, "dst"))
    assert storage.listdir(storage.join(root, "src")) == []
    assert storage.read_bytes(storage.join(root, "dst", "y.bin")) == b"y.bin"


def test_an_unknown_connection_is_a_clear_error_naming_it(s3_env, monkeypatch):
    from retrain import settings

    monkeypatch.setenv("RETRAIN_STORAGE_CONN_ID", "retrain_s3_missing")
    settings.reset_settings()
    storage.reset_connections()
    with pytest.raises(storage.StorageConnectionError, match="'retrain_s3_missing' is not defined"):
        storage.exists(storage.join(get_settings().data_root, "x"))


def test_a_connection_without_credentials_is_a_clear_error_naming_it(s3_env, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(
        {"conn_type": "aws", "extra": {"endpoint_url": s3_env.endpoint_url, "region_name": "us-east-1"}}))
    storage.reset_connections()
    with pytest.raises(storage.StorageConnectionError, match="'aws_default' yields no AWS credentials"):
        storage.read_bytes(storage.join(get_settings().data_root, "x"))


# --- the household-power slice on S3 -------------------------------------------------------------------------

def test_power_file_lands_is_snapshotted_archived_gated_and_trained_on_s3(s3_env, power_file, tmp_path):
    from retrain import snapshots
    from retrain.ingest import landing, power
    from retrain.workloads import tabular

    _land(tmp_path, "household_power", "household_power_consumption.txt", power_file)
    assert landing.pending("household_power") == ["household_power_consumption.txt"]
    result = power.ingest_file("household_power_consumption.txt", "run-s3")
    assert result.status == "ingested"
    extra = result.snapshot.event_extra()
    assert extra["uri"] == f"{get_settings().data_root}/curated/household_power/version={extra['version']}"
    keys = _keys(s3_env, "")
    version = extra["version"]
    assert f"data/curated/household_power/version={version}/manifest.json" in keys
    assert f"data/archive/household_power/{version}/household_power_consumption.txt" in keys
    assert not [k for k in keys if k.startswith("data/landing/") or k.startswith("data/work/ingest/")]
    assert storage.read_bytes(get_settings().archive("household_power", version, "household_power_consumption.txt")) == power_file

    snapshot = snapshots.from_uri(extra["uri"])
    snapshots.verify(snapshot, extra["sha256"])
    work = get_settings().training_work("tabular_ml_training", "manual__s3", "household_power")
    cfg = tabular.dataset_config("household_power")
    assert tabular.gate(extra, cfg, work)["verdict"] == "passed"
    tabular.prepare(extra, cfg, work)
    tabular.train(extra, cfg, work)
    metrics = tabular.evaluate(extra, cfg, work)
    assert metrics["test_rmse"] < metrics["baseline_seasonal_naive_rmse"]
    assert {"quality/quality_report.md", "train.parquet", "model.txt", "evaluate.json"} <= {
        k.split("/household_power/", 1)[1] for k in _keys(s3_env, "work/train/")}

    # the same content again: no new version, no event; a retry of the first run resumes and re-emits
    _land(tmp_path, "household_power", "same-again.txt", power_file)
    assert power.ingest_file("same-again.txt", "run-s3-2").status == "duplicate"
    assert power.ingest_file("household_power_consumption.txt", "run-s3").status == "resumed"
    assert storage.listdir(get_settings().curated("household_power")) == ["head.json", "shards", f"version={version}"]
    # the snapshot on S3 is a manifest over month shards, each read back against its sha256
    snapshot = snapshots.from_uri(extra["uri"])
    assert snapshot.sharded and [e["month"] for e in snapshot.manifest["files"]] == ["2006-12", "2007-01"]
    snapshots.verify(snapshot, extra["sha256"])


def test_an_unparseable_file_is_quarantined_on_s3_with_a_reason(s3_env, tmp_path):
    from retrain.errors import DataFormatError
    from retrain.ingest import power

    bad = b"Date,Time,Global_active_power\n16/12/2006,17:24:00,4.216\n"
    _land(tmp_path, "household_power", "comma.csv", bad)
    with pytest.raises(DataFormatError):
        power.ingest_file("comma.csv", "run-bad")
    quarantine = get_settings().quarantine("household_power")
    assert storage.read_bytes(storage.join(quarantine, "comma.csv")) == bad
    reason = json.loads(storage.read_text(storage.join(quarantine, "comma.csv.reason.json")))
    assert reason["rule"] == "fields must be separated by ';'"
    assert storage.listdir(get_settings().landing("household_power")) == []


def test_a_claim_interrupted_after_its_copy_is_finished_by_the_retry(s3_env, tmp_path, monkeypatch):
    from retrain.data.power import generate_power
    from retrain.ingest import power

    _land(tmp_path, "household_power", "p.txt", generate_power(2000, seed=5))
    store = storage._store()
    real_delete = store.delete
    monkeypatch.setattr(store, "delete", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("worker lost")))
    with pytest.raises(ConnectionError):
        power.ingest_file("p.txt", "run-crash")
    assert storage.exists(get_settings().landing("household_power", "p.txt"))  # still there: not lost
    monkeypatch.setattr(store, "delete", real_delete)
    assert power.ingest_file("p.txt", "run-crash").status == "ingested"
    assert storage.listdir(get_settings().landing("household_power")) == []


# --- images on S3 -----------------------------------------------------------------------------------------------

def test_an_mnist_drop_is_pending_only_once_complete_and_ingests_on_s3(s3_env, tmp_path):
    from retrain.data import mnist
    from retrain.ingest import images, landing
    from retrain import snapshots
    from retrain.workloads import images as image_workload

    files = mnist.generate_mnist(400, 200, seed=1)
    # a producer half-way through uploading a drop: files, no _SUCCESS yet
    for name, data in list(files.items())[:2]:
        storage.write_bytes(get_settings().landing("mnist", "partial", name), data)
    _land(tmp_path, "mnist", "drop-1", files)
    assert landing.pending("mnist") == ["drop-1"]
    assert storage.exists(get_settings().landing("mnist", "drop-1", landing.DROP_COMPLETE))

    result = images.ingest_drop("mnist", "drop-1", "run-img")
    assert result.status == "ingested" and result.snapshot.manifest["splits"] == {"train": 400, "test": 200}
    assert landing.DROP_COMPLETE not in [s["name"].split("/")[-1] for s in result.snapshot.manifest["source_files"]]
    assert landing.pending("mnist") == []
    work = get_settings().training_work("image_dl_training", "manual__s3", "mnist")
    extra = result.snapshot.event_extra()
    assert image_workload.gate(extra, image_workload.dataset_config("mnist"), work)["verdict"] == "passed"
    # the gate read every shard once, into the checked cache, where the steps then map it
    cached = {p.name for p in snapshots.shard_cache().iterdir()}
    assert {f"{e['sha256']}.npy" for e in result.snapshot.manifest["files"]} <= cached, cached


# --- arrivals: S3 notifications on the real queue ---------------------------------------------------------------

def test_notifications_from_the_queue_become_one_event_per_dataset(s3_env, power_file, tmp_path):
    from retrain import arrivals
    from retrain.data import mnist
    from retrain.ingest import power

    _bodies(s3_env)  # the s3:TestEvent from configuring notifications
    _land(tmp_path, "household_power", "a b+c.txt", generate_power(3000, seed=11))
    _land(tmp_path, "mnist", "drop-1", mnist.generate_mnist(50, 10, seed=3))
    storage.write_text(storage.join(get_settings().data_root, "curated/x.txt"), "not notified: filtered by prefix")
    bodies = _bodies(s3_env)
    assert len(bodies) == 1 + 4 + 1  # the power file; mnist's four files and its _SUCCESS
    assert "a+b%2Bc.txt" in bodies[0]  # keys arrive URL-encoded

    first = arrivals.dispatch(bodies + ["{not an S3 notification}"], "route-1")
    assert first.events["household_power"]["names"] == ["a b+c.txt"]
    assert first.events["household_power"]["keys"] == ["data/landing/household_power/a b+c.txt"]
    assert first.events["mnist"]["names"] == ["drop-1"]
    assert first.summary()["dropped"] == 1 and first.summary()["ignored"] == 4

    again = arrivals.dispatch(bodies, "route-2")  # SQS redelivered the lot
    assert again.events == {} and len(again.repeats) == 2
    retry = arrivals.dispatch(bodies, "route-1")  # the first run's retry re-emits what it named
    assert set(retry.events) == {"household_power", "mnist"}

    assert arrivals.select("household_power", [first.events["household_power"]]) == ["a b+c.txt"]
    power.ingest_file("a b+c.txt", "ingest-1")
    assert arrivals.select("household_power", [first.events["household_power"]]) == []  # the repeat takes nothing
    bodies_after = _bodies(s3_env)
    assert bodies_after == []  # ingest writes outside landing/: no notifications


def test_the_sweep_names_objects_that_no_event_named(s3_env, power_file, tmp_path):
    from retrain import arrivals

    _land(tmp_path, "household_power", "lost.txt", generate_power(1000, seed=12))
    _bodies(s3_env)  # the watcher took the message and the run that should have routed it failed
    assert arrivals.sweep("sweep-1", timedelta(minutes=10)).events == {}  # too young
    swept = arrivals.sweep("sweep-2", timedelta(0))
    assert swept.events["household_power"]["names"] == ["lost.txt"]
    assert swept.events["household_power"]["source"] == "reconcile"
    assert arrivals.sweep("sweep-3", timedelta(seconds=60)).events == {}  # named just now: not again


def test_the_sqs_watcher_trigger_fires_with_the_message_batch(s3_env, tmp_path):
    """The trigger route_arrivals' asset watcher runs in the triggerer, here run directly against the queue."""
    from retrain import config
    from retrain.airflow import arrivals

    config.load.cache_clear()
    schedule = arrivals.arrivals_schedule()
    (watched,) = schedule.asset_condition.objects if hasattr(schedule.asset_condition, "objects") else [schedule.asset_condition]
    trigger = watched.watchers[0].trigger
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow.providers.amazon.aws.triggers.sqs.SqsSensorTrigger"
    assert kwargs["sqs_queue"] == s3_env.queue_url and kwargs["delete_message_on_reception"] is True
    _bodies(s3_env)
    _land(tmp_path, "household_power", "w.txt", b"x")

    async def first_event():
        async for event in trigger.run():
            return event.payload

    payload = asyncio.run(asyncio.wait_for(first_event(), timeout=30))
    from retrain import arrivals

    bodies = arrivals.message_bodies([{"payload": payload}])
    assert [a.name for a in arrivals.route(bodies, arrivals.Landing.from_settings()).arrivals] == ["w.txt"]
    assert _bodies(s3_env) == []  # deleted on reception


# --- the DAGs in-process on S3 ------------------------------------------------------------------------------

@pytest.fixture
def sqs_dags(s3_env, airflow_db, tmp_path, monkeypatch):
    """The DAG folder parsed in the sqs profile, with a sweep that takes objects of any age."""
    import yaml
    from retrain import config

    configs = tmp_path / "configs"
    shutil.copytree(REPO / "configs", configs)
    raw = yaml.safe_load((configs / "ingest.yaml").read_text())
    raw["arrivals"]["reconcile_min_age_minutes"] = 0
    (configs / "ingest.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("RETRAIN_CONFIG_DIR", str(configs))
    from retrain import settings

    settings.reset_settings()
    config.load.cache_clear()
    _retire_local_data_assets()
    from inprocess import load_dags

    return load_dags()


def _retire_local_data_assets() -> None:
    """Earlier tests in this session registered the data assets under the local (file://) data root. Airflow keeps
    asset names unique among *active* assets, so the S3 ones could not become active and their events would be
    dropped. A deployment uses one data root; here the earlier ones are orphaned, as the dag processor would."""
    from airflow.models.asset import AssetActive
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(AssetActive).where(AssetActive.uri.like("file://%")))


def _stray_arrivals_event(bodies: list[str]) -> None:
    """An event of the watched arrivals asset carrying these SQS messages, as the watcher records it, that no run
    consumes."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from retrain.airflow import arrivals
    from sqlalchemy import select

    asset = arrivals.arrivals_asset()
    batch = [{"MessageId": str(i), "ReceiptHandle": "r", "Body": body} for i, body in enumerate(bodies)]
    with create_session() as session:
        model = session.scalar(select(AssetModel).where(AssetModel.name == asset.name, AssetModel.uri == asset.uri))
        if model is None:  # the router DAG was never run here, so its assets are not in the DB yet
            model = AssetModel(name=asset.name, uri=asset.uri, group=asset.group)
            session.add(model)
            session.flush()
        asset_manager.register_asset_change(asset=model, session=session,
                                            extra={"from_trigger": True, "payload": {"status": "success", "message_batch": batch}})


def test_router_and_ingest_dags_on_s3(sqs_dags, s3_env, power_file, tmp_path):
    from inprocess import asset_events, task_states

    ingest = sqs_dags.get_dag("ingest_power")
    assert ingest.timetable.asset_condition.name == "landing.household_power"
    assert "wait_for_landing" not in ingest.task_ids
    router = sqs_dags.get_dag("route_arrivals")
    assert sqs_dags.get_dag("ingest_ticks").get_task("wait_for_partition").task_type == "S3KeySensor"

    _bodies(s3_env)
    _land(tmp_path, "household_power", "dag.txt", power_file)
    _stray_arrivals_event(_bodies(s3_env))  # the watcher's event for it, consumed by no run (apache/airflow#56050)
    before = len(asset_events("landing.household_power"))
    run = router.test()  # a manual run: routes the stray event's messages, then sweeps
    assert str(run.state) == "success", task_states(run)
    events = asset_events("landing.household_power")
    assert len(events) == before + 1 and events[-1]["extra"]["names"] == ["dag.txt"]
    assert events[-1]["extra"]["source"] == "sqs+reconcile"  # named from the message, found again by the sweep

    data_before = len(asset_events("household_power"))
    run = ingest.test()  # a manual run takes everything waiting
    assert str(run.state) == "success", task_states(run)
    data = asset_events("household_power")
    assert len(data) == data_before + 1 and data[-1]["extra"]["uri"].startswith(s3_env.data_root)
    assert storage.listdir(get_settings().landing("household_power")) == []


def test_in_the_sqs_profile_every_asset_but_the_watched_one_has_a_producing_task(sqs_dags):
    """The ingest DAGs are scheduled on the ``landing.<dataset>`` assets here: each has the router's publishing
    task as its producer in the asset graph; only the arrivals asset's events come from outside (its watcher)."""
    from airflow.dag_processing.collection import AssetModelOperation
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    collected = AssetModelOperation.collect({d: LazyDeserializedDAG.from_dag(dag) for d, dag in sqs_dags.dags.items()})
    producers: dict[str, set[str]] = {}
    for dag_id, references in collected.outlet_references.items():
        for task_id, asset in references:
            producers.setdefault(asset.name, set()).add(f"{dag_id}.{task_id}")
    referenced = {a.name for refs in collected.schedule_asset_references.values() for a in refs}
    referenced |= {a.name for refs in collected.inlet_references.values() for _, a in refs}
    assert "landing.household_power" in referenced
    assert {name for name in referenced if not producers.get(name)} == {"landing_arrivals"}
    assert producers["landing.mnist"] == {"route_arrivals.publish_landing_mnist"}


def test_the_dag_processor_keeps_the_sqs_watcher_of_route_arrivals(sqs_dags):
    """The dag processor keeps one definition per asset, the last one it meets in a DAG: the router's inlet must
    carry the watcher too, or the triggerer stops polling SQS at the next parse (it did, once the inlet was
    added without it)."""
    from airflow.dag_processing.collection import AssetModelOperation
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from retrain.airflow import arrivals

    router = sqs_dags.get_dag("route_arrivals")
    assert [a.name for t in router.tasks for a in t.inlets] == ["landing_arrivals"]
    collected = AssetModelOperation.collect({"route_arrivals": LazyDeserializedDAG.from_dag(router)})
    asset = arrivals.arrivals_asset()
    watchers = collected.assets[(asset.name, asset.uri)].watchers
    assert [w.name for w in watchers] == ["landing_arrivals_sqs"]


def test_a_tick_partition_on_s3_is_complete_once_its_marker_is_there(s3_env, tmp_path):
    from datetime import date

    from retrain.data import tick_generator
    from retrain.ingest import landing, ticks

    table = tick_generator.generate_ticks(date(2026, 2, 2), ticks_per_day=2000, seed=1)
    landed = _land(tmp_path, "ticks", "date=2026-02-02", {"ticks.csv": tick_generator.to_csv_bytes(table)})
    assert storage.listdir(landed) == [landing.DROP_COMPLETE, "ticks.csv"]  # what the S3 sensor waits for
    result = ticks.ingest_partition("2026-02-02", "run-ticks")
    assert result.status == "ingested" and result.snapshot.partition == "2026-02-02"
    version = result.snapshot.version  # each build of a partition is its own immutable version
    assert result.snapshot.location == get_settings().curated("ticks", "date=2026-02-02", f"version={version}")
    assert [s["name"] for s in result.snapshot.manifest["source_files"]] == ["date=2026-02-02/ticks.csv"]
    assert ticks.partitions() == ["2026-02-02"] and storage.listdir(get_settings().landing("ticks")) == []
    assert ticks.reland("2026-02-02")  # archived raw files go back for a rebuild, marker last
    assert ticks.ingest_partition("2026-02-02", "run-ticks-2").status == "duplicate"
