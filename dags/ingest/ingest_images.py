"""
### ingest_mnist, ingest_cifar10

**Trigger:** by default each runs continuously; a run waits (deferred in the triggerer, holding no worker slot)
until a drop folder appears in the landing zone's `mnist/` or `cifar10/` folder (`retrain land mnist DIR`
copies one in atomically; on S3 a drop is complete once its `_SUCCESS` object is written, last). In the sqs
profile (`RETRAIN_ARRIVALS=sqs`) each is scheduled on its `landing.<dataset>` asset instead, which
`route_arrivals` feeds from S3 notifications; a run takes exactly the drops its events name.

**Produces:** for every drop, an immutable curated snapshot (`curated/<dataset>/version=<id>/`: `.npy`
arrays + manifest) that includes every earlier drop's images, and one `mnist` or `cifar10` asset event whose
extra names it (`schema, uri, version, sha256, rows, source_files`).

Drops are MNIST IDX files (`train-images-idx3-ubyte[.gz]` …) or CIFAR-10 *binary* batches
(`data_batch_N.bin`, `test_batch.bin`, `batches.meta.txt`) under their original names; nothing is ever
unpickled. The same drop landed again emits nothing. A malformed drop (bad magic, truncated file, counts that
disagree, labels outside 0-9, a pickle, mixed datasets, no training split) goes to `quarantine/<dataset>/`
with a `.reason.json` and fails its task without retry.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from retrain import config
from retrain.airflow.arrivals import landed_names, landing_inlets, landing_schedule, landing_sensor
from retrain.airflow.assets import data_asset
from retrain.airflow.defaults import dag_kwargs
from retrain.airflow.failures import permanent_errors_fail_fast

ingest_cfg = config.load("ingest")

for dataset in ("mnist", "cifar10"):
    asset = data_asset(dataset)
    with DAG(
        dag_id=f"ingest_{dataset}",
        schedule=landing_schedule(dataset),
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        doc_md=__doc__,
        params={"workload": "ingest"},
        **dag_kwargs("ingest"),
    ):
        wait_for_landing = landing_sensor(
            dataset,
            folder=True,
            task_id="wait_for_landing",
            doc=f"Waits for a drop folder in landing/{dataset}/.",
            poke_interval=ingest_cfg.poke_interval_seconds,
            timeout=ingest_cfg.wait_timeout_hours * 3600,
        )

        @task(inlets=landing_inlets(dataset))
        @permanent_errors_fail_fast
        def list_landed(dataset: str = dataset, **context) -> list[str]:
            """Names of the drops this run ingests (those its events name, or all waiting in the landing folder)."""
            return landed_names(context, dataset)

        @task(outlets=[asset], multiple_outputs=False)
        @permanent_errors_fail_fast
        def ingest(drop: str, dataset: str = dataset, asset=asset, *, outlet_events=None, run_id=None) -> dict:
            """One drop -> one cumulative snapshot -> one image dataset event."""
            from airflow.sdk.exceptions import AirflowSkipException

            from retrain.ingest import images

            result = images.ingest_drop(dataset, drop, run_id)
            if not result.emits_event:
                raise AirflowSkipException(f"{drop}: already in snapshot {result.snapshot.version}; no event")
            extra = result.snapshot.event_extra()
            outlet_events[asset].extra = extra
            return extra

        drops = list_landed()
        if wait_for_landing is not None:
            wait_for_landing >> drops
        ingest.expand(drop=drops)
