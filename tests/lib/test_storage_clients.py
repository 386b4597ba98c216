"""Where ``s3://`` clients come from: storage is handed a client factory (the Airflow glue's, on the Airflow
connection) and otherwise builds one from the standard AWS settings, as the ``retrain`` CLI does on a box
without a scheduler. Anonymous access is never a fall-back."""

from __future__ import annotations

import pytest

from retrain import settings, storage


@pytest.fixture
def s3_root(monkeypatch):
    """An ``s3://`` data root on moto's in-process S3, fake credentials in the AWS environment, and the
    default (non-Airflow) client factory; the factory in place before is restored after."""
    from moto import mock_aws

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("RETRAIN_DATA_ROOT", "s3://retrain-clients/data")
    monkeypatch.setattr(storage, "_client_factory", storage._client_factory)  # restored after the test
    settings.reset_settings()
    storage.configure(None)
    with mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="retrain-clients")
        yield settings.get_settings().data_root
    storage.reset_connections()
    monkeypatch.undo()
    settings.reset_settings()


def test_outside_airflow_the_standard_aws_environment_reaches_the_store(s3_root):
    location = storage.join(s3_root, "landing/x/one.txt")
    storage.write_text(location, "1")
    assert storage.read_bytes(location) == b"1" and storage.listdir(storage.join(s3_root, "landing/x")) == ["one.txt"]


def test_outside_airflow_no_credentials_is_a_clear_error(s3_root, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(storage.StorageConnectionError, match="yields no credentials.*anonymous access is refused"):
        storage.exists(storage.join(s3_root, "x"))


def test_a_handed_in_factory_builds_the_client_once_per_connection(s3_root, monkeypatch):
    asked = []

    def factory(conn: str):
        asked.append(conn)
        return storage.environment_client(conn)

    monkeypatch.setenv("RETRAIN_STORAGE_CONN_ID", "retrain_s3")
    settings.reset_settings()
    storage.configure(factory)
    storage.write_text(storage.join(s3_root, "a.txt"), "a")
    assert storage.read_text(storage.join(s3_root, "a.txt")) == "a"
    assert asked == ["retrain_s3"]
    storage.configure(None)  # back to the default: the factory is asked no more
    assert storage.exists(storage.join(s3_root, "a.txt")) and asked == ["retrain_s3"]


def test_the_airflow_glue_hands_storage_the_connection_client(monkeypatch):
    import importlib

    monkeypatch.setattr(storage, "_client_factory", storage._client_factory)  # restored after the test
    storage.configure(None)
    import retrain.airflow
    from retrain.airflow import connections

    importlib.reload(retrain.airflow)
    assert storage._client_factory is connections.s3_client
