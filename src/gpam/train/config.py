"""Optimisation settings of the training engine: :class:`TrainConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpam.train.schedule import SCHEDULES

BUDGET_CLOCKS = ("wall", "cpu", "steps")
# the learning-rate schedule's settings (stored in every checkpoint as ``schedule``)
SCHEDULE_FIELDS = (
    "steps",
    "time_budget",
    "budget_clock",
    "lr",
    "warmup",
    "warmup_fraction",
    "schedule",
    "min_lr_ratio",
)


@dataclass
class TrainConfig:
    """Optimisation settings (all JSON-safe)."""

    steps: int = 1000
    time_budget: float | None = None
    budget_clock: str = "wall"
    lr: float = 1e-3
    warmup: int = 100
    warmup_fraction: float | None = None  # warm up over this fraction of progress instead
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.98
    clip: float = 1.0
    accum: int = 1
    bf16: bool = False
    eval_every: int = 200
    log_every: int = 10
    checkpoint_every: int = 200
    patience: int | None = None
    seed: int = 0
    compile: bool = False  # torch.compile the model (its compile time is reported apart)

    def __post_init__(self) -> None:
        for name in ("steps", "accum", "eval_every", "log_every", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.budget_clock not in BUDGET_CLOCKS:
            raise ValueError(
                f"budget_clock must be one of {', '.join(BUDGET_CLOCKS)}, got {self.budget_clock!r}"
            )
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"time_budget must be > 0 seconds, got {self.time_budget}")
        if self.warmup < 0 or self.clip < 0:
            raise ValueError("warmup and clip must be >= 0")
        if self.warmup_fraction is not None and not 0.0 < self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in (0, 1), got {self.warmup_fraction}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")

    def schedule_state(self) -> dict[str, Any]:
        """What the learning-rate schedule depends on (stored in every checkpoint)."""
        return {k: getattr(self, k) for k in SCHEDULE_FIELDS}
