"""Run the project's DAGs in this process, without a scheduler: the DAG bag and what a run left behind.

Test support (``tests/conftest.py`` puts this folder on ``sys.path``): used by the in-process DAG tests
(``dag.test()``); the metadata DB is the embedded one that :mod:`retrain.environment` configures.
"""

from __future__ import annotations

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
