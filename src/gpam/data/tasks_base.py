"""The base of the built-in synthetic tasks: token ids shared by every task, the batch type and
:class:`SyntheticTask` (subclasses write one row; batching and seeding live here once).

The tasks themselves are in :mod:`gpam.data.synthetic` (and :mod:`gpam.data.tasks_listops`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

PAD, BOS, SEP = 0, 1, 2
N_SPECIAL = 3


@dataclass
class SyntheticBatch:
    """One batch: ``inputs``, ``targets`` (long) and ``loss_mask`` (bool), all ``(B, T)``."""

    inputs: torch.Tensor
    targets: torch.Tensor
    loss_mask: torch.Tensor

    def to(self, device: str | torch.device) -> SyntheticBatch:
        """The same batch on ``device``."""
        return SyntheticBatch(
            self.inputs.to(device), self.targets.to(device), self.loss_mask.to(device)
        )


@dataclass
class SyntheticTask:
    """Base class: subclasses implement :meth:`sequence` (one full token row + scored positions)."""

    name: str = "task"
    seq_len: int = 64
    vocab_size: int = 16
    metric: str = "accuracy"  # "accuracy" (higher is better) or "perplexity" (lower is better)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool:
        """True when a larger value of :attr:`metric` is better."""
        return self.metric != "perplexity"

    def sequence(self, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        """One token row (length <= ``seq_len + 1``) and the indices of the scored target tokens."""
        raise NotImplementedError

    def batch(self, batch_size: int, seed: int) -> SyntheticBatch:
        """A deterministic batch of ``batch_size`` rows for ``seed``: tensors ``(B, seq_len)``."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        rng = np.random.default_rng([int(seed), _stable_hash(self.name)])
        rows = np.full((batch_size, self.seq_len + 1), PAD, dtype=np.int64)
        mask = np.zeros((batch_size, self.seq_len), dtype=bool)
        for b in range(batch_size):
            toks, scored = self.sequence(rng)
            if len(toks) > self.seq_len + 1:
                raise AssertionError(f"{self.name}: row of {len(toks)} > seq_len + 1")
            rows[b, : len(toks)] = toks
            for i in scored:  # i indexes the full row; target position is i - 1
                mask[b, i - 1] = True
        t = torch.from_numpy(rows)
        return SyntheticBatch(t[:, :-1].clone(), t[:, 1:].clone(), torch.from_numpy(mask))

    def describe(self) -> dict[str, Any]:
        """JSON-safe description (name, sizes, options)."""
        return {
            "task": self.name,
            "seq_len": self.seq_len,
            "vocab_size": self.vocab_size,
            "metric": self.metric,
            **self.options,
        }


def _stable_hash(text: str) -> int:
    return int.from_bytes(text.encode("utf-8")[:8].ljust(8, b"\0"), "little") % (2**31)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value
