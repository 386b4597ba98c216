"""``retrain demo``: the household-power slice end to end on the embedded default.

Drives the real DAGs in-process with ``dag.test()`` (no scheduler yet): sample data lands, ``ingest_power``
snapshots it and publishes a ``household_power`` event, ``tabular_ml_training`` gates, trains, evaluates and
logs a candidate to MLflow, then publishes the candidate event.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

from retrain import storage
from retrain.settings import get_settings


def load_dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(get_settings().dags_dir))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag


def asset_events(asset_name: str) -> list[dict]:
    """Events recorded in the metadata DB for an asset (oldest first)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == asset_name).order_by(AssetEvent.id)
        ).scalars().all()
        return [{"id": e.id, "extra": dict(e.extra or {}), "source_dag_id": e.source_dag_id,
                 "source_run_id": e.source_run_id, "timestamp": e.timestamp} for e in rows]


def task_states(dag_run) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: str(ti.state)
            for ti in dag_run.get_task_instances()}


def run_power_slice(rows: int) -> int:
    from retrain import stack
    from retrain.data.power import generate_power
    from retrain.ingest import landing

    started = time.perf_counter()
    settings = get_settings()
    print(f"RETRAIN_HOME={settings.home}")
    stack.setup(quiet=True)
    print(f"[{time.perf_counter() - started:5.1f}s] Airflow metadata DB and pools ready")

    sample = storage.join(str(settings.home), "samples", f"household_power_{datetime.now():%Y%m%dT%H%M%S}.txt")
    storage.write_bytes(sample, generate_power(rows, seed=int(time.time()) % 1000))
    landing.land("household_power", sample)
    print(f"[{time.perf_counter() - started:5.1f}s] landed {storage.name(sample)} ({rows} one-minute readings)")

    bag = load_dags()
    ingest_run = bag.get_dag("ingest_power").test()
    print(f"[{time.perf_counter() - started:5.1f}s] ingest_power: {ingest_run.state} {task_states(ingest_run)}")
    if str(ingest_run.state) != "success":
        return 1
    event = asset_events("household_power")[-1]
    print(json.dumps(event["extra"], indent=2))

    train_run = bag.get_dag("tabular_ml_training").test()
    print(f"[{time.perf_counter() - started:5.1f}s] tabular_ml_training: {train_run.state} {task_states(train_run)}")
    if str(train_run.state) != "success":
        return 1
    candidate = asset_events("household_power_lgbm.candidate")[-1]["extra"]
    metrics = candidate["metrics"]
    print(f"\nCandidate {candidate['model']} — MLflow run {candidate['run_id']} ({candidate['model_uri']})")
    print(f"  test RMSE {metrics['test_rmse']:.4f} kW vs seasonal naive {metrics['baseline_seasonal_naive_rmse']:.4f} kW"
          f"   MAE {metrics['test_mae']:.4f} vs {metrics['baseline_seasonal_naive_mae']:.4f}")
    print(f"  data {candidate['data']['version']} ({candidate['data']['rows']} rows), quality gate {candidate['quality_verdict']}")
    print(f"  MLflow store: {settings.mlflow_tracking_uri}")
    print(f"  browse: mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}")
    print(f"\nDone in {time.perf_counter() - started:.1f}s")
    return 0
