"""Celery queues: which workers can score a candidate (a CPU worker carries no PyTorch)."""

from __future__ import annotations

from retrain import assets

DEFAULT_QUEUE, GPU_QUEUE = "default", "gpu"
# workloads whose models load PyTorch to be scored: their candidates are judged where torch is installed
TORCH_WORKLOADS = frozenset({"image_dl_training"})


def by_judge_queue(events: list[dict]) -> dict[str, list[dict]]:
    """Candidate events split by the Celery queue whose workers can score them (order kept in each)."""
    split: dict[str, list[dict]] = {DEFAULT_QUEUE: [], GPU_QUEUE: []}
    for event in events:
        workload = assets.CANDIDATE_ASSETS[event["model"]].workload
        split[GPU_QUEUE if workload in TORCH_WORKLOADS else DEFAULT_QUEUE].append(event)
    return split
