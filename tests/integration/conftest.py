"""Fixtures for tests on real services: an S3 + SQS endpoint (moto server, in-process, always available).

``moto_services`` is shared with other integration tests (the scale-out chain): keep its name and shape.
"""

from __future__ import annotations

import json
import logging
import socket
import uuid
from collections.abc import Iterator

import pytest

REGION = "us-east-1"
FAKE_KEY, FAKE_SECRET = "testing", "testing"  # moto accepts any credentials; never real ones here
DATA_PREFIX = "data"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServices(dict):
    """The environment of the S3 profile (a ``dict``: pass it to ``os.environ.update`` or a subprocess),
    plus handles on the services: ``endpoint_url``, ``bucket``, ``queue_url``, ``data_root`` and boto3 clients
    ``s3`` and ``sqs``."""

    def __init__(self, env: dict[str, str], *, endpoint_url: str, bucket: str, queue_url: str, s3, sqs):
        super().__init__(env)
        self.endpoint_url, self.bucket, self.queue_url, self.s3, self.sqs = endpoint_url, bucket, queue_url, s3, sqs
        self.data_root = env["RETRAIN_DATA_ROOT"]

    def drain(self, wait_seconds: int = 0) -> list[dict]:
        """Receive and delete every message now in the queue (the notification test message included)."""
        found = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                             WaitTimeSeconds=wait_seconds).get("Messages", [])
            if not batch:
                return found
            found += batch
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]} for m in batch])


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server (S3 and SQS on one port) on 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_services(moto_server) -> MotoServices:
    """A fresh bucket and SQS queue on the session's moto server, wired like production, as an env dict.

    * bucket ``retrain-<id>`` holds the data root ``s3://retrain-<id>/data``;
    * queue ``retrain-arrivals-<id>`` receives the bucket's ``s3:ObjectCreated:*`` notifications for keys under
      ``data/landing/`` (S3 sends one ``s3:TestEvent`` message when the configuration is set: it is left in the
      queue, as it would be in production; ``services.drain()`` removes everything queued);
    * the dict: ``RETRAIN_DATA_ROOT``, ``AIRFLOW_CONN_AWS_DEFAULT`` (JSON: fake login/password,
      ``extra.endpoint_url`` and ``extra.region_name``), ``RETRAIN_ARRIVALS=sqs``, ``RETRAIN_SQS_QUEUE_URL``,
      ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_DEFAULT_REGION`` (fake), ``AWS_ENDPOINT_URL`` and
      ``MLFLOW_S3_ENDPOINT_URL`` (the endpoint, for clients that take no Airflow connection).

    Nothing is put into ``os.environ``: use ``s3_env`` for that, or pass the dict to a subprocess.
    """
    import boto3

    run = uuid.uuid4().hex[:10]
    bucket, queue = f"retrain-{run}", f"retrain-arrivals-{run}"
    clients = {"endpoint_url": moto_server, "region_name": REGION, "aws_access_key_id": FAKE_KEY,
               "aws_secret_access_key": FAKE_SECRET}
    s3, sqs = boto3.client("s3", **clients), boto3.client("sqs", **clients)
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [{
        "Id": "retrain-landing", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": f"{DATA_PREFIX}/landing/"}]}},
    }]})
    connection = {"conn_type": "aws", "login": FAKE_KEY, "password": FAKE_SECRET,
                  "extra": {"endpoint_url": moto_server, "region_name": REGION}}
    env = {
        "RETRAIN_DATA_ROOT": f"s3://{bucket}/{DATA_PREFIX}",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
        "RETRAIN_ARRIVALS": "sqs",
        "RETRAIN_SQS_QUEUE_URL": queue_url,
        "AWS_ACCESS_KEY_ID": FAKE_KEY,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_server,
        "MLFLOW_S3_ENDPOINT_URL": moto_server,
    }
    return MotoServices(env, endpoint_url=moto_server, bucket=bucket, queue_url=queue_url, s3=s3, sqs=sqs)


def _reset_caches() -> None:
    from retrain import config, settings, storage

    settings.reset_settings()
    config.load.cache_clear()
    storage.reset_connections()


@pytest.fixture
def s3_env(moto_services, monkeypatch) -> Iterator[MotoServices]:
    """``moto_services`` applied to ``os.environ`` for this test (settings, config and clients re-read), with
    storage on the Airflow connection's client, as in a task (the Airflow glue hands it in)."""
    from retrain import storage
    from retrain.airflow import connections

    for key, value in moto_services.items():
        monkeypatch.setenv(key, value)
    storage.configure(connections.s3_client)
    _reset_caches()
    yield moto_services
    monkeypatch.undo()
    _reset_caches()
