"""Hand-written gradients for the lambda maths of every layer: the clamp that keeps a learnable
lambda >= 0 and the affine mix ``lerp(pos, neg, -lam)``, each with fewer ops than autograd records
(the same values and gradients, bit for bit).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class _ClampNonnegative(torch.autograd.Function):
    """``max(raw, 0)`` forward, identity backward (a straight-through clamp): one op instead of
    the four of ``raw + (raw.clamp_min(0) - raw).detach()``, which gives the same bits."""

    @staticmethod
    def forward(ctx: Any, raw: Tensor) -> Tensor:
        return raw.clamp_min(0.0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


#: attribute that marks a tensor made by :func:`clamp_nonnegative` without autograd
_NONNEGATIVE = "_gpam_nonnegative"


def clamp_nonnegative(raw: Tensor) -> Tensor:
    """``max(raw, 0)`` with the gradient of ``raw`` itself (so a lambda at 0 can grow again).

    Without autograd (no grad mode, or ``raw`` needs none) a plain ``clamp_min``, marked so that
    :func:`made_nonnegative` knows it (the autograd Function's overhead and the functional
    ops' sign check, a device-to-host read, are skipped at every decoding step)."""
    if torch.is_grad_enabled() and raw.requires_grad:
        return _ClampNonnegative.apply(raw)
    out = raw.clamp_min(0.0)
    if not torch.compiler.is_compiling():  # (a traced graph runs no data checks anyway)
        setattr(out, _NONNEGATIVE, True)
    return out


def made_nonnegative(t: Tensor) -> bool:
    """Whether ``t`` is the output of :func:`clamp_nonnegative` (so >= 0 without a look)."""
    if isinstance(t.grad_fn, _ClampNonnegative._backward_cls):  # type: ignore[attr-defined]
        return True
    return getattr(t, _NONNEGATIVE, False) is True


class _AffineMix(torch.autograd.Function):
    """``lerp(pos, neg, w)`` for a tensor weight ``w = -lam``, with the gradients torch's own
    ``lerp`` backward computes (``g (1 - w)``, ``g w``, ``sum(g (neg - pos))``), and the one of
    ``lam`` directly, ``sum(g (pos - neg))``: 6 backward ops instead of 10."""

    @staticmethod
    def forward(ctx: Any, pos: Tensor, neg: Tensor, lam: Tensor) -> Tensor:
        w = -lam
        ctx.save_for_backward(pos, neg, w)
        ctx.lam_shape = lam.shape
        return torch.lerp(pos, neg, w)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Any:
        pos, neg, w = ctx.saved_tensors
        g_pos = g * (1 - w) if ctx.needs_input_grad[0] else None
        g_neg = g * w if ctx.needs_input_grad[1] else None
        g_lam = None
        if ctx.needs_input_grad[2]:
            g_lam = (g * (pos - neg)).sum_to_size(ctx.lam_shape)
        return g_pos, g_neg, g_lam


def lerp_by_neg_lambda(pos: Tensor, neg: Tensor, lam: Tensor) -> Tensor:
    """``lerp(pos, neg, -lam)`` for a tensor ``lam`` broadcastable to ``pos`` (see
    :class:`_AffineMix`); plain ``lerp`` where no gradient reaches ``lam``."""
    if not (lam.requires_grad and torch.is_grad_enabled()):
        return torch.lerp(pos, neg, -lam)
    return _AffineMix.apply(pos, neg, lam)
