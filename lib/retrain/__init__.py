"""retrain: dataset-aware, event-driven ML retraining on Apache Airflow 3.

The library holds every piece of logic; DAG files under ``dags/`` only wire it.
Nothing here imports Airflow except the glue package :mod:`retrain.airflow`, so ``python -m retrain …`` runs
any step on a box without a scheduler.
"""

__version__ = "0.1.0"
