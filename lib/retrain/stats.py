"""Power arithmetic shared by the promotion config (which validates policies at DAG parse time, so it must stay
light: no numpy here) and :mod:`retrain.promotion` (which tests and decides)."""

from __future__ import annotations

import math
from statistics import NormalDist

TARGET_POWER = 0.8  # the power every MDE and required n is stated at


def z_sum(confidence: float, power: float = TARGET_POWER) -> float:
    """z_{1-α/2} + z_{power} for a two-sided test at ``confidence`` (α = 1 - confidence)."""
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2) + NormalDist().inv_cdf(power)


def training_floor(training_sd: float, confidence: float, power: float = TARGET_POWER) -> float:
    """What no evaluation set detects below when retrains of one recipe differ by themselves with sd
    ``training_sd``: the minimum detectable effect as n grows without bound, z_sum · √2 · training_sd."""
    return z_sum(confidence, power) * math.sqrt(2) * training_sd
