"""Routing S3 notifications (as SQS delivers them) to per-dataset landing events: pure parsing, no services."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from urllib.parse import quote_plus

import pytest

from retrain import arrivals
from retrain.arrivals import Landing

LANDING = Landing(bucket="retrain-data", prefix="prod/landing/")


def record(key: str, *, bucket: str = "retrain-data", event: str = "ObjectCreated:Put", etag: str = "0f343b0931126a20f133d67c2b018a3b",
           sequencer: str = "0055AED6DCD90281E5", encode: bool = True) -> dict:
    """One record as S3 writes it (https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "eu-west-1",
        "eventTime": "2026-11-26T09:12:43.123Z",
        "eventName": event,
        "userIdentity": {"principalId": "AWS:AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "10.0.0.7"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "retrain-landing",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key, safe="") if encode else key, "size": 1024, "eTag": etag,
                       "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko", "sequencer": sequencer},
        },
    }


def body(*records: dict) -> str:
    return json.dumps({"Records": list(records)})


TEST_EVENT = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-26T09:00:00.000Z",
                         "Bucket": "retrain-data", "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"})


def test_a_landed_power_file_is_one_arrival_named_by_its_key():
    routing = arrivals.route([body(record("prod/landing/household_power/2026-11-25.txt"))], LANDING)
    assert [(a.dataset, a.name, a.key) for a in routing.arrivals] == [
        ("household_power", "2026-11-25.txt", "prod/landing/household_power/2026-11-25.txt")]
    assert routing.dropped == [] and routing.duplicates == []


def test_keys_arrive_url_encoded_and_are_decoded():
    routing = arrivals.route([body(record("prod/landing/household_power/a b+c%é.txt"))], LANDING)
    assert json.loads(body(record("prod/landing/household_power/a b+c%é.txt")))["Records"][0]["s3"]["object"]["key"] == \
        "prod%2Flanding%2Fhousehold_power%2Fa+b%2Bc%25%C3%A9.txt"
    assert [a.name for a in routing.arrivals] == ["a b+c%é.txt"]
    assert routing.arrivals[0].key == "prod/landing/household_power/a b+c%é.txt"


@pytest.mark.parametrize("message", [
    "hello",  # not JSON
    "[1, 2]",  # JSON, not an object
    json.dumps({"order_id": 7}),  # another application's message
    json.dumps({"Records": []}),
    json.dumps({"Records": [{"eventSource": "aws:dynamodb", "dynamodb": {}}]}),
    json.dumps({"version": "0", "detail-type": "Object Created", "source": "aws.s3", "detail": {}}),  # EventBridge
])
def test_a_message_that_is_not_an_s3_notification_is_dropped(message):
    routing = arrivals.route([message], LANDING)
    assert routing.arrivals == []
    assert [d.reason for d in routing.dropped] == ["not an S3 notification"]


def test_the_test_event_is_ignored_not_an_arrival():
    routing = arrivals.route([TEST_EVENT], LANDING)
    assert routing.arrivals == [] and routing.dropped == []
    assert [i.reason for i in routing.ignored] == ["s3:TestEvent"]


@pytest.mark.parametrize("rec, reason", [
    (record("prod/curated/household_power/version=1/manifest.json"), "outside the landing prefix"),
    (record("prod/landing"), "outside the landing prefix"),
    (record("staging/landing/household_power/a.txt"), "outside the landing prefix"),
    (record("prod/landing/household_power/a.txt", bucket="someone-else"), "another bucket"),
    (record("prod/landing/household_power/a.txt", event="ObjectRemoved:Delete"), "not an object-created event"),
    (record("prod/landing/weather/a.txt"), "no routed dataset"),
    (record("prod/landing/household_power/../../curated/x"), "not a file inside"),
    (record("prod/landing/household_power/nested/a.txt"), "files sit directly under"),
    (record("prod/landing/mnist/train-images-idx3-ubyte.gz"), "drops are folders"),
])
def test_keys_outside_the_routed_landing_folders_are_dropped(rec, reason):
    routing = arrivals.route([body(rec)], LANDING)
    assert routing.arrivals == []
    assert len(routing.dropped) == 1 and reason in routing.dropped[0].reason
    assert rec["s3"]["bucket"]["name"] in routing.dropped[0].detail  # the log line names the object


def test_an_image_drop_is_routed_by_its_success_marker_only():
    parts = [record(f"prod/landing/mnist/drop-7/{name}") for name in
             ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "_SUCCESS")]
    routing = arrivals.route([body(*parts)], LANDING)
    assert [(a.dataset, a.name) for a in routing.arrivals] == [("mnist", "drop-7")]
    assert len(routing.ignored) == 2 and routing.dropped == []


def test_ticks_and_uploads_in_progress_are_ignored():
    routing = arrivals.route([body(record("prod/landing/ticks/date=2026-11-25/AAPL.csv"),
                                   record("prod/landing/household_power/.part-1.txt"))], LANDING)
    assert routing.arrivals == [] and routing.dropped == []
    assert [i.reason for i in routing.ignored] == ["tick partitions land on ingest_ticks' partition timetable",
                                                   "upload in progress (hidden name)"]


def test_a_repeated_notification_is_one_arrival_but_a_second_put_is_another():
    first = record("prod/landing/household_power/a.txt", sequencer="0055AED6DCD90281E5")
    again = record("prod/landing/household_power/a.txt", sequencer="0055AED6DCD90281E5")
    second_put = record("prod/landing/household_power/a.txt", sequencer="0055AED6DCD90281F9")
    routing = arrivals.route([body(first), body(again), body(second_put)], LANDING)
    assert [a.version for a in routing.arrivals] == ["0055AED6DCD90281E5", "0055AED6DCD90281F9"]
    assert len(routing.duplicates) == 1


def test_without_a_sequencer_the_event_time_tells_puts_apart():
    rec = record("prod/landing/household_power/a.txt")
    del rec["s3"]["object"]["sequencer"]  # S3-compatible stores (and moto) may leave it out
    later = json.loads(json.dumps(rec)) | {"eventTime": "2026-11-26T09:13:00.000Z"}
    routing = arrivals.route([body(rec), body(rec), body(later)], LANDING)
    assert len(routing.arrivals) == 2 and len(routing.duplicates) == 1


def test_a_batch_of_five_mixed_messages():
    batch = [
        body(record("prod/landing/household_power/2026-11-25.txt")),
        TEST_EVENT,
        "not json at all",
        body(record("prod/landing/household_power/2026-11-25.txt")),  # SQS delivered it twice
        body(record("prod/landing/cifar10/drop 3/data_batch_1.bin"), record("prod/landing/cifar10/drop 3/_SUCCESS"),
             record("prod/archive/household_power/x.txt")),
    ]
    extras = [{"from_trigger": True, "payload": {"status": "success", "message_batch": [
        {"MessageId": str(i), "ReceiptHandle": "r", "MD5OfBody": "m", "Body": b} for i, b in enumerate(batch)]}}]
    routing = arrivals.route(arrivals.message_bodies(extras), LANDING)
    assert {ds: [a.name for a in found] for ds, found in routing.by_dataset().items()} == {
        "household_power": ["2026-11-25.txt"], "cifar10": ["drop 3"]}
    assert len(routing.duplicates) == 1
    assert sorted(d.reason.split(" '")[0] for d in routing.dropped) == ["not an S3 notification", "outside the landing prefix"]
    assert sorted(i.reason.split(" (")[0] for i in routing.ignored) == ["part of a cifar10 drop", "s3:TestEvent"]

    event = arrivals.landing_event("cifar10", routing.by_dataset()["cifar10"], LANDING, "sqs")
    assert event == {"schema": 1, "dataset": "cifar10", "source": "sqs", "bucket": "retrain-data",
                     "keys": ["prod/landing/cifar10/drop 3/_SUCCESS"], "names": ["drop 3"]}


def test_s3_notifications_relayed_by_sns_are_unwrapped():
    wrapped = json.dumps({"Type": "Notification", "MessageId": "x", "TopicArn": "arn:aws:sns:eu-west-1:1:t",
                          "Message": body(record("prod/landing/household_power/a.txt"))})
    assert [a.name for a in arrivals.route([wrapped], LANDING).arrivals] == ["a.txt"]


def test_a_data_root_at_the_bucket_root_has_landing_at_the_top():
    routing = arrivals.route([body(record("landing/household_power/a.txt"))], Landing("retrain-data", "landing/"))
    assert [a.name for a in routing.arrivals] == ["a.txt"]


def test_an_ingest_run_takes_the_union_of_its_events_names_in_order():
    extras = [{"dataset": "household_power", "names": ["b.txt", "a.txt"]},
              {"dataset": "household_power", "names": ["a.txt", "c.txt"]}]
    assert arrivals.names_from_events("household_power", extras) == ["b.txt", "a.txt", "c.txt"]


_NOW = datetime.now(timezone.utc)


def _event(n: int, minutes_ago: float, *consumers: str):
    """An event as the task SDK lists an inlet's events: with the runs it created."""
    return SimpleNamespace(id=n, timestamp=_NOW - timedelta(minutes=minutes_ago), extra={"n": n},
                           created_dagruns=[SimpleNamespace(dag_id=d, run_id="r") for d in consumers])


def _triggering(event):
    """The same event as a run's ``triggering_asset_events`` hold it: no id, no runs."""
    return SimpleNamespace(timestamp=event.timestamp, extra=event.extra)


class _Inlets:
    """``inlet_events`` of a task with one inlet, ``asset``; ``after`` lists ``history`` or raises ``error``."""

    def __init__(self, asset, history, error=None):
        self.asset, self.history, self.error, self.since = asset, history, error, None

    def __getitem__(self, key):
        assert key == self.asset
        return self

    def after(self, since: str):
        self.since = datetime.fromisoformat(since)
        if self.error:
            raise self.error
        return [e for e in self.history if e.timestamp >= self.since]


@pytest.fixture
def sqs_arrivals(monkeypatch):
    from retrain.airflow import arrivals as airflow_arrivals

    monkeypatch.setattr(airflow_arrivals, "event_driven_arrivals", lambda: True)


def test_a_run_also_takes_recent_events_no_run_of_its_dag_consumed(sqs_arrivals):
    """apache/airflow#56050: an event that lands while the DAG's queue entry waits is consumed by no run until the
    asset's next event; the next run of the DAG takes it (and only it: not events other runs consumed)."""
    from retrain.airflow import arrivals as airflow_arrivals

    asset = airflow_arrivals.arrivals_asset()
    mine = _event(3, 1, "route_arrivals")  # triggered this run
    history = [_event(1, 5, "route_arrivals"),  # consumed by an earlier run
               _event(2, 2),  # consumed by no run: stranded
               mine,
               _event(4, 0.5, "other_dag"),  # another DAG's run consumed it, this DAG's none
               _event(5, 60)]  # older than the lookback (the sweep's business)
    inlets = _Inlets(asset, history)
    context = {"triggering_asset_events": {asset: [_triggering(mine)]}, "inlet_events": inlets,
               "ti": SimpleNamespace(dag_id="route_arrivals")}
    assert airflow_arrivals.events_to_handle(context, asset) == [{"n": 2}, {"n": 3}, {"n": 4}]
    assert timedelta(minutes=29) < datetime.now(timezone.utc) - inlets.since <= timedelta(minutes=31)  # arrivals.unconsumed_lookback_minutes

    context["triggering_asset_events"] = {}  # a run no event triggered (the reconcile cron)
    assert airflow_arrivals.events_to_handle(context, asset) == [{"n": 2}, {"n": 4}]


def test_when_the_events_cannot_be_listed_a_run_handles_its_own(sqs_arrivals, caplog):
    """apache/airflow#71360 (3.3.2): listing an asset's events fails while a run one of them created is queued and
    not started; the run goes on with the events that triggered it and says why."""
    from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    from retrain.airflow import arrivals as airflow_arrivals

    asset = airflow_arrivals.arrivals_asset()
    mine = _event(3, 1, "route_arrivals")
    error = AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status_code": 500}))
    context = {"triggering_asset_events": {asset: [_triggering(mine)]}, "inlet_events": _Inlets(asset, [], error),
               "ti": SimpleNamespace(dag_id="route_arrivals")}
    assert airflow_arrivals.events_to_handle(context, asset) == [{"n": 3}]
    assert "could not list the recent events of landing_arrivals" in caplog.text and "500" in caplog.text


def test_without_sqs_arrivals_a_run_handles_only_its_triggering_events():
    """The sensor profile declares no inlet: nothing is listed (a manual run of the router must not fail)."""
    from retrain.airflow import arrivals as airflow_arrivals

    asset = airflow_arrivals.arrivals_asset()
    inlets = _Inlets(asset, [_event(2, 2)], KeyError(asset))
    context = {"triggering_asset_events": {}, "inlet_events": inlets, "ti": SimpleNamespace(dag_id="route_arrivals")}
    assert airflow_arrivals.events_to_handle(context, asset) == []
    assert inlets.since is None
