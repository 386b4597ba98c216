-- MLflow's backend store, beside Airflow's metadata DB (created by POSTGRES_DB) on the same server.
CREATE DATABASE mlflow OWNER airflow;
