"""Validation of lambda tensors that vary per head and per query token (shape (B, H, Lq, 1)), and
the affine mix of two attention outputs by lambda (shared by the SDPA path and the fused kernel)."""

from __future__ import annotations

import torch
from torch import Tensor

from gpam.functional._checks import as_lambda, check_lambda
from gpam.functional._lambda_grad import clamp_nonnegative, lerp_by_neg_lambda

__all__ = [
    "affine_mix",
    "check_lambda",
    "check_lambda_shape",
    "check_token_lambda",
    "clamp_nonnegative",
]


def check_lambda_shape(name: str, value: float | Tensor, target: tuple[int, int, int]) -> None:
    """Raise unless a tensor ``value`` broadcasts to ``(B, H, Lq, 1)`` = ``(*target, 1)``.

    Accepted: a scalar, shape (H,) (per head; the caller views it as (1, H, 1, 1)), or a 4-D
    tensor broadcastable to (B, H, Lq, 1) (per head and per query token).
    """
    if not isinstance(value, Tensor) or value.dim() in (0, 1):
        return
    want = (*target, 1)
    ok = value.dim() == 4
    if ok:
        try:
            ok = torch.broadcast_shapes(value.shape, want) == torch.Size(want)
        except RuntimeError:
            ok = False
    if not ok:
        raise ValueError(
            f"{name} must be a scalar, shape (heads,) or broadcastable to (B, H, Lq, 1) = {want}, "
            f"got shape {tuple(value.shape)}"
        )


def check_token_lambda(
    name: str,
    value: float | Tensor,
    target: tuple[int, int, int],
    ref: Tensor,
    *,
    nonnegative: bool = True,
) -> float | Tensor:
    """Validated lambda: a finite float, or a 4-D tensor (B|1, H|1, Lq|1, 1) on ref's device and
    in its dtype. ``target = (B, H, Lq)``; the shape check is :func:`check_lambda_shape`, the rest
    :func:`gpam.functional._checks.as_lambda` (as daGPAM's lambdas), so non-negativity of tensors
    is checked only where data checks run (CPU eager or ``GPAM_DEBUG_CHECKS=1``).
    """
    check_lambda_shape(name, value, target)
    value = as_lambda(name, value, target[1], ref, nonnegative=nonnegative)
    return value.to(device=ref.device) if isinstance(value, Tensor) else value


def affine_mix(pos: Tensor, neg: Tensor, lam_neg: float | Tensor) -> Tensor:
    """``(1 + lam_neg) * pos - lam_neg * neg`` as ``lerp(pos, neg, -lam_neg)``: one fused op
    with lambda at its own precision, exact at ``lam_neg = 0``.

    The weight ``1 + lam_neg`` of the other form would round, for a tensor lambda in bf16, to
    bf16's spacing near 1 (2^-7), merging small lambdas into one output. Float and tensor
    lambdas take the same form, so a per-token lambda equal to a fixed one gives the same bits.
    """
    if isinstance(lam_neg, Tensor):
        return lerp_by_neg_lambda(pos, neg, lam_neg)  # a hand-written backward, same bits
    return torch.lerp(pos, neg, -float(lam_neg))
