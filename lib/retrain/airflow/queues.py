"""Celery queues: which workers can score a candidate (a CPU worker carries no PyTorch)."""

from __future__ import annotations

DEFAULT_QUEUE, GPU_QUEUE = "default", "gpu"


def by_judge_queue(events: list[dict]) -> dict[str, list[dict]]:
    """Candidate events split by the Celery queue whose workers can score them (order kept in each)."""
    from retrain import catalog

    split: dict[str, list[dict]] = {DEFAULT_QUEUE: [], GPU_QUEUE: []}
    for event in events:  # the catalog's scoring queue: models that load PyTorch are judged where torch is
        split[catalog.model(event["model"]).scoring_queue].append(event)
    return split
