"""retrain: dataset-aware, event-driven ML retraining on Apache Airflow 3.

The library holds every piece of logic; DAG files under ``dags/`` only wire it.
Nothing here imports Airflow except :mod:`retrain.orchestration`.
"""

__version__ = "0.1.0"
