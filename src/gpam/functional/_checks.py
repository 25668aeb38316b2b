"""Input validation and grouped-query expansion shared by every variant (masks:
``gpam.functional._masks``)."""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

from gpam.functional._lambda_grad import made_nonnegative

MASKED_AT_OR_BELOW = -8192.0
"""An additive float mask entry ``<= -8192`` (``-2**13``, exact in every float dtype; ``-inf``,
``-1e9``, ``finfo(dtype).min``, ``-1e4`` in any dtype) counts as *masked*, for every variant;
bool masks: False = masked. Masked entries get weight exactly 0; rows with no unmasked key
(dead rows) give zero weights and zero output."""


def data_checks_enabled(t: Tensor) -> bool:
    """Whether data-dependent validation (a device-to-host sync) runs for a tensor like ``t``.

    On CPU in eager mode, or anywhere with ``GPAM_DEBUG_CHECKS=1``; never while
    ``torch.compile`` traces (no graph breaks, no syncs on the CUDA hot path).
    """
    if _compiling():
        return False
    return t.device.type == "cpu" or os.environ.get("GPAM_DEBUG_CHECKS", "0") not in ("", "0")


def masked_entries(mask: Tensor) -> Tensor:
    """Bool tensor, True where ``mask`` masks a key (see :data:`MASKED_AT_OR_BELOW`)."""
    if mask.dtype == torch.bool:
        return ~mask
    return mask <= MASKED_AT_OR_BELOW


def check_tensor(name: str, t: object, *, dim: int = 4) -> Tensor:
    """Raise a clear error unless ``t`` is a floating-point tensor with ``dim`` dimensions."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != dim:
        raise ValueError(
            f"{name} must be {dim}-D (batch, heads, length, head_dim), got shape {tuple(t.shape)}"
        )
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    return t


def check_qkv(
    q: Tensor, k: Tensor, v: Tensor, names: tuple[str, str, str] = ("query", "key", "value")
) -> None:
    """Check layouts ``q (B, H, Lq, D)``, ``k (B, Hkv, Lk, D)``, ``v (B, Hkv, Lk, Dv)``."""
    for name, t in zip(names, (q, k, v)):
        check_tensor(name, t)
    nq, nk, nv = names
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(
            f"{nq}, {nk}, {nv} must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if not (q.device == k.device == v.device):
        raise ValueError(f"{nq}, {nk}, {nv} must be on one device")
    if not (q.shape[0] == k.shape[0] == v.shape[0]):
        raise ValueError(
            f"batch sizes of {nq}, {nk}, {nv} differ: {q.shape[0]}, {k.shape[0]}, {v.shape[0]}"
        )
    if k.shape[1] != v.shape[1] or k.shape[2] != v.shape[2]:
        raise ValueError(
            f"{nk} and {nv} must have the same heads and length, got {tuple(k.shape)} and "
            f"{tuple(v.shape)}"
        )
    if q.shape[1] % k.shape[1] != 0:
        raise ValueError(
            f"{nq} heads ({q.shape[1]}) must be a multiple of {nk} heads ({k.shape[1]}) "
            "(grouped-query attention)"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"{nq} and {nk} must have the same head_dim, got {q.shape[-1]} and {k.shape[-1]}"
        )
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise ValueError(f"{nq} and {nk} must have at least one position")


def check_same(name: str, t: Tensor, ref_name: str, ref: Tensor) -> None:
    """Check that ``t`` has the shape, dtype and device of ``ref``."""
    check_tensor(name, t)
    if t.shape != ref.shape:
        raise ValueError(
            f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(t.shape)}"
        )
    if t.dtype != ref.dtype or t.device != ref.device:
        raise TypeError(f"{name} must have the dtype and device of {ref_name}")


def check_dropout(dropout_p: float) -> None:
    """Dropout probability must lie in [0, 1)."""
    if not isinstance(dropout_p, (int, float)) or not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be a number in [0, 1), got {dropout_p!r}")


def default_scale(scale: float | None, head_dim: int) -> float:
    """``scale`` or ``1/sqrt(head_dim)``."""
    if scale is None:
        return 1.0 / math.sqrt(head_dim)
    if not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number or None, got {scale!r}")
    return float(scale)


def expand_kv(t: Tensor, num_heads: int) -> Tensor:
    """Repeat key/value heads for grouped-query attention: (B, Hkv, L, D) -> (B, H, L, D)."""
    b, hkv, length, d = t.shape
    if hkv == num_heads:
        return t
    rep = num_heads // hkv
    return t[:, :, None].expand(b, hkv, rep, length, d).reshape(b, num_heads, length, d)


def check_lambda(
    name: str, value: object, *, allow_none: bool = False, nonnegative: bool = True
) -> float | None:
    """A lambda hyperparameter as a float: a finite number (>= 0 unless ``nonnegative=False``),
    or None where ``allow_none``. TypeError for a non-number, ValueError for a bad value; the one
    check of a scalar lambda setting (functional ops, layers, model configs, HF conversion)."""
    bound = " >= 0" if nonnegative else ""
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name} must be a number{bound}, got None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a finite number{bound}, got {value!r}")
    if not math.isfinite(value) or (nonnegative and value < 0):
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return float(value)


def as_lambda(
    name: str, value: float | Tensor, num_heads: int, ref: Tensor, *, nonnegative: bool = True
) -> float | Tensor:
    """Validate a lambda (float, or tensor of shape (), (H,) or broadcastable to (B, H, 1, 1))."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    if isinstance(value, Tensor):
        look = nonnegative and data_checks_enabled(value) and not made_nonnegative(value)
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        if value.dim() == 1:
            if value.shape[0] not in (1, num_heads):
                raise ValueError(
                    f"{name} of shape ({value.shape[0]},) needs one entry per head ({num_heads})"
                )
            value = value.view(1, -1, 1, 1)
        elif value.dim() not in (0, 4):
            raise ValueError(
                f"{name} must be a scalar, shape (heads,) or broadcastable to (B, H, 1, 1), "
                f"got shape {tuple(value.shape)}"
            )
        if look and bool((value < 0).any()):  # a clamped lambda is >= 0: no look (a sync)
            raise ValueError(f"{name} must be >= 0, got a negative entry")
        return value.to(ref.dtype)
    return check_lambda(name, value, nonnegative=nonnegative)  # type: ignore[return-value]


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def dropout(weights: Tensor, dropout_p: float) -> Tensor:
    """Dropout on attention weights (applied whenever ``dropout_p > 0``, as in SDPA)."""
    return torch.nn.functional.dropout(weights, dropout_p) if dropout_p > 0 else weights
