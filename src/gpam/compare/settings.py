"""The budget and optimisation settings shared by every run of a comparison, and how they map
onto the training engine (:class:`gpam.train.TrainConfig`): one schedule (linear warmup over the
first ``warmup`` fraction, then cosine to 10 %, both measured in ``max(step / steps, elapsed /
time_budget)``, so a time budget warms up over its first 10 % whatever the step cap),
one weight-decay policy (:mod:`gpam.train.params`), and a time budget that counts training
steps only (validation excluded), on the same clocks as ``gpam train``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpam.train.loop import TrainConfig


@dataclass
class TrainSettings:
    """Budget and optimisation settings shared by every run of a comparison."""

    steps: int = 300
    time_budget: float | None = None  # per run, on ``budget_clock``; then ``steps`` is a cap
    budget_clock: str = "wall"
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of ``steps``
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_batches: int = 4  # synthetic tasks: validation batches of ``eval_batch_size``
    eval_batch_size: int = 64
    max_eval_tokens: int | None = 200_000  # lm: validation tokens per evaluation
    device: str = "cpu"
    compile: bool = False  # torch.compile each run's model

    def validate(self) -> None:
        """Raise ValueError naming the bad field: this class's own fields here, the rest (steps,
        time budget and clock, lr, eval_every, clip, weight decay) by the engine's
        :class:`TrainConfig`, which checks them the same way for ``gpam train``."""
        for name in ("batch_size", "eval_batches", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup must be a fraction of steps in [0, 1), got {self.warmup}")
        if self.max_eval_tokens is not None and self.max_eval_tokens < 1:
            raise ValueError(f"max_eval_tokens must be >= 1 or None, got {self.max_eval_tokens}")
        check_device(self.device)
        self.train_config(seed=0)

    def train_config(self, seed: int) -> TrainConfig:
        """The engine's settings for one run with ``seed``."""
        return TrainConfig(
            steps=self.steps,
            time_budget=self.time_budget,
            budget_clock=self.budget_clock,
            lr=self.lr,
            warmup=0,
            warmup_fraction=self.warmup or None,  # of the steps or of the time budget
            schedule="cosine",
            min_lr_ratio=0.1,
            weight_decay=self.weight_decay,
            clip=self.grad_clip,
            eval_every=self.eval_every,
            log_every=self.eval_every,
            checkpoint_every=self.eval_every,
            seed=seed,
            compile=self.compile,
        )


def check_device(device: str) -> torch.device:
    """``torch.device(device)``, or ValueError naming ``device`` when it is unknown/unavailable."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"device must be a torch device such as cpu or cuda:0, got {device!r}"
        ) from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    return dev
