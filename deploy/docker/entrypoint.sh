#!/bin/sh
# Put the profile's environment (retrain.environment: executor, metadata DB, broker, DAG folder, ...) in place,
# then run the component: `airflow scheduler`, `airflow celery worker --queues gpu`, `retrain setup`, ...
set -eu
eval "$(retrain env)"
exec "$@"
