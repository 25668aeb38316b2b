"""Mean cross-entropy over batches (validation losses) and perplexity."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor


def at_least_fp32(t: Tensor) -> Tensor:
    """``t`` in float32 for the loss (bf16 / fp16 logits are upcast); float64 stays float64, so
    float64 models keep their precision end to end."""
    return t if t.dtype == torch.float64 else t.float()


def loss_logits(t: Tensor) -> Tensor:
    """``t`` as the training cross-entropy should take it: as it is under autocast for its
    device (autocast runs ``cross_entropy`` in float32 itself, so an explicit cast would only
    add a second B x T x V copy), else :func:`at_least_fp32`."""
    if torch.is_autocast_enabled(t.device.type) and t.dtype in (torch.bfloat16, torch.float16):
        return t
    return at_least_fp32(t)


def nats_to_ppl(loss: float) -> float:
    """Perplexity of a mean loss in nats (inf when it overflows)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def mean_nll(pairs: Iterable[tuple[Tensor, Tensor]], ignore_index: int = -100) -> float:
    """Mean cross-entropy (nats per target) over ``(logits, targets)`` batches: the summed loss
    of every batch divided by the total count (so batch sizes do not weight the mean)."""
    total, n = 0.0, 0
    for logits, targets in pairs:
        t, c = summed_nll(logits, targets, ignore_index)
        total, n = total + t, n + c
    return total / n


def summed_nll(logits: Tensor, targets: Tensor, ignore_index: int = -100) -> tuple[float, int]:
    """Summed cross-entropy (nats) of ``logits (..., V)`` against ``targets (...)``, and the count
    of targets that are not ``ignore_index``: validation losses are ``sum(total) / sum(count)``."""
    total = torch.nn.functional.cross_entropy(
        at_least_fp32(logits).reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=ignore_index,
        reduction="sum",
    )
    return float(total), int((targets != ignore_index).sum())
