"""Validation of lambda tensors that vary per head and per query token (shape (B, H, Lq, 1))."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gpam.functional._checks import data_checks_enabled


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
    """Validated lambda: a finite float, or a 4-D tensor (B|1, H|1, Lq|1, 1) in ref's dtype.

    ``target = (B, H, Lq)``. Non-negativity of tensors is checked only where data checks run
    (``gpam.functional._checks.data_checks_enabled``: CPU eager or ``GPAM_DEBUG_CHECKS=1``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    if not isinstance(value, Tensor):
        if not math.isfinite(value) or (nonnegative and value < 0):
            bound = " >= 0" if nonnegative else ""
            raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
        return float(value)
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if value.dim() == 1:
        if value.shape[0] not in (1, target[1]):
            raise ValueError(
                f"{name} of shape ({value.shape[0]},) needs one entry per head ({target[1]})"
            )
        value = value.view(1, -1, 1, 1)
    check_lambda_shape(name, value, target)
    if nonnegative and data_checks_enabled(value) and bool((value < 0).any()):
        raise ValueError(f"{name} must be >= 0, got a negative entry")
    return value.to(device=ref.device, dtype=ref.dtype)
