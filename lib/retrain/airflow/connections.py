"""The object-store client :mod:`retrain.storage` uses inside Airflow: one from the amazon provider's
``S3Hook`` on the Airflow connection ``RETRAIN_STORAGE_CONN_ID`` (default ``aws_default``), which supplies
credentials, region and endpoint (``extra.endpoint_url`` for S3-compatible stores). Importing
:mod:`retrain.airflow` hands it to storage."""

from __future__ import annotations

from retrain.storage import StorageConnectionError


def s3_client(conn: str):
    """A boto3 S3 client on Airflow connection ``conn``. A connection that is not defined, or one that yields no
    credentials, is a :class:`~retrain.storage.StorageConnectionError` naming it, never a silent fall-back to
    anonymous access."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # only the scale-out profile pays for this import

    try:
        from airflow.sdk import BaseHook

        BaseHook.get_connection(conn)
    except Exception as exc:  # AirflowNotFoundException, or no way to look connections up at all
        raise StorageConnectionError(
            f"Airflow connection {conn!r} is not defined (rule: an s3:// data root needs that connection, e.g. "
            f"AIRFLOW_CONN_{conn.upper()} or RETRAIN_STORAGE_CONN_ID; observed: {type(exc).__name__}: {exc})"
        ) from None
    hook = S3Hook(aws_conn_id=conn)
    if hook.get_session().get_credentials() is None:
        raise StorageConnectionError(
            f"Airflow connection {conn!r} yields no AWS credentials (rule: set login/password or "
            "extra.aws_access_key_id, a role, or the AWS_* environment; anonymous access is refused)"
        )
    return hook.get_conn()
