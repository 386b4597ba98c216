"""The workload pools (design contract 6), created by the setup step."""

from __future__ import annotations

import os
from collections.abc import Mapping

from retrain import config


def ensure_pools(sizes: Mapping[str, int] | None = None) -> None:
    """Create or resize the workload pools (idempotent) as ``configs/deployment.yaml`` sizes them: ``gpu`` (one
    slot per GPU) and ``cpu``; ``sizes`` overrides single pools."""
    from airflow.models.pool import Pool

    wanted = config.deployment().pool_slots(os.cpu_count() or 2) | dict(sizes or {})
    for name, slots in wanted.items():
        Pool.create_or_update_pool(name=name, slots=slots, description=f"retrain {name} workloads",
                                   include_deferred=False)
