"""Airflow glue: the only part of the library that imports Airflow.

DAG files call into here for their assets, defaults and context handling, and into the rest of :mod:`retrain`
for the work itself. Everything here is cheap at import: DAG files parse it on every loop. Importing the
package hands :mod:`retrain.storage` its object-store client (from the Airflow connection, see
:mod:`retrain.airflow.connections`), so a task reaches ``s3://`` through the connection Airflow manages.

Modules, by responsibility: ``assets`` (Asset objects and aliases), ``defaults`` (DAG and task defaults),
``failures`` (failure e-mails, errors that fail without retry), ``runs`` (what a run reads from its task
context: coordinates, work folder, the events it acts on), ``claims`` (freshness-ledger claims),
``reconcile`` (the freshness reconcile DAG), ``arrivals`` (landing sensors, the SQS router and its
schedule), ``tick_requests`` (ingest asking for tick training), ``queues`` (where candidates are judged),
``champions`` (champion events, applying a review), ``publishing`` (one producing task per asset: the
static outlets the asset graph links to), ``pools`` and ``connections``.
"""

from __future__ import annotations

from retrain import storage
from retrain.airflow import connections

storage.configure(connections.s3_client)
