"""daGPAM's fused query weight ``[W_h; N_h^T W_h]`` per head, with a hand-written backward.

One batched product forward and three backward (``baddbmm`` where a sum follows), instead of the
ops autograd records for the composition (fewer small kernels per layer and step).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class _ComposeQuery(torch.autograd.Function):
    """``(weight (H*D, E), bias (H*D,) or None, n (H, D, D))`` -> ``(w (2H*D, E), b or None)``
    with rows ``[W_h; N_h^T W_h]`` and bias ``[b_h, b_h N_h]`` for each head h."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, bias: Tensor | None, n: Tensor) -> Any:
        h, d = n.shape[0], n.shape[1]
        w3 = weight.view(h, d, -1)
        w_both = torch.stack((w3, torch.bmm(n.transpose(1, 2), w3)), 1).view(2 * h * d, -1)
        b_both = None
        if bias is not None:
            b3 = bias.view(h, 1, d)
            b_both = torch.cat((b3, torch.bmm(b3, n)), 1).view(2 * h * d)
        ctx.save_for_backward(weight, bias, n)
        return w_both, b_both

    @staticmethod
    def backward(ctx: Any, g_w: Tensor, g_b: Tensor | None) -> Any:
        weight, bias, n = ctx.saved_tensors
        h, d = n.shape[0], n.shape[1]
        g_pos, g_neg = g_w.view(h, 2, d, -1).unbind(1)
        g_weight = torch.baddbmm(g_pos, n, g_neg).view(h * d, -1)
        g_n = torch.bmm(weight.view(h, d, -1), g_neg.transpose(1, 2))
        g_bias = None
        if bias is not None and g_b is not None:
            b_pos, b_neg = g_b.view(h, 2, 1, d).unbind(1)
            g_bias = torch.baddbmm(b_pos, b_neg, n.transpose(1, 2)).view(h * d)
            g_n = torch.baddbmm(g_n, bias.view(h, d, 1), b_neg)
        return g_weight, g_bias, g_n


def compose_query(weight: Tensor, bias: Tensor | None, n: Tensor) -> tuple[Tensor, Tensor | None]:
    """The fused projection of ``Q_pos`` and ``Q_neg = Q_pos N`` (see :class:`_ComposeQuery`);
    rows (and heads of the output) are ordered per head as (positive, negative) pairs."""
    return _ComposeQuery.apply(weight, bias, n)
