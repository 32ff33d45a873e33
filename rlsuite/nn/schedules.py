"""Learning-rate schedules as a multiplier of the base rate, by progress through the run's updates."""
from __future__ import annotations

import math

from rlsuite.errors import UserError

LR_SCHEDULES = ("constant", "linear", "cosine")


def lr_factor(progress: float, schedule: str, final: float) -> float:
    """1 at progress 0, `final` at progress 1 ('linear': straight line; 'cosine': half cosine)."""
    p = min(1.0, max(0.0, progress))
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return 1.0 + p * (final - 1.0)
    if schedule == "cosine":
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * p))
    raise UserError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")
