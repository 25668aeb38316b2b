"""Learning-rate schedules: linear warmup then inverse-sqrt, cosine or constant.

The factor is a pure function of the step (and, for cosine under a time budget, of the
fraction of the budget used), so resuming needs only the step count.
"""

from __future__ import annotations

import math

SCHEDULES = ("inverse_sqrt", "cosine", "constant")


def lr_factor(
    schedule: str, step: int, warmup: int, progress: float, min_ratio: float = 0.1
) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (1-based).

    ``progress`` in [0, 1] is how far training is (steps or time budget, whichever is further);
    cosine decays from 1 to ``min_ratio`` over it. Inverse-sqrt is ``min(s/w, sqrt(w/s))``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    step = max(1, step)
    warm = min(1.0, step / warmup) if warmup > 0 else 1.0
    if schedule == "constant":
        return warm
    if schedule == "inverse_sqrt":
        return warm if step <= warmup or warmup <= 0 else math.sqrt(warmup / step)
    p = min(1.0, max(0.0, progress))
    return warm * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p)))
