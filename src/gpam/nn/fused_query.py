"""daGPAM's fused query weight ``[W_h; N_h^T W_h]`` per head, with a hand-written backward.

One batched product forward and three backward (``baddbmm`` where a sum follows), instead of the
ops autograd records for the composition (fewer small kernels per layer and step); backward reuses
the forward's views of the weight, bias and map (saved, not made again: 3 ops less per layer).
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
        w3, nt = weight.view(h, d, -1), n.transpose(1, 2)
        w_both = torch.stack((w3, torch.bmm(nt, w3)), 1).view(2 * h * d, -1)
        b_both = b_col = None
        if bias is not None:  # per head: [b_h; N_h^T b_h] = [b_h, b_h N_h] as a column
            b_col = bias.view(h, d, 1)
            b_both = torch.cat((b_col, torch.bmm(nt, b_col)), 1).view(2 * h * d)
        # the views backward needs, saved as made here (each costs an op when made again)
        ctx.save_for_backward(w3, b_col, n, nt)
        return w_both, b_both

    @staticmethod
    def backward(ctx: Any, g_w: Tensor, g_b: Tensor | None) -> Any:
        w3, b_col, n, nt = ctx.saved_tensors
        h, d = n.shape[0], n.shape[1]
        g_pos, g_neg = g_w.view(h, 2, d, -1).unbind(1)
        g_weight = torch.baddbmm(g_pos, n, g_neg).view(h * d, -1)
        g_n = torch.bmm(w3, g_neg.transpose(1, 2))
        g_bias = None
        if b_col is not None and g_b is not None:
            b_pos, b_neg = g_b.view(h, 2, 1, d).unbind(1)
            g_bias = torch.baddbmm(b_pos, b_neg, nt).view(h * d)
            g_n = torch.baddbmm(g_n, b_col, b_neg)
        return g_weight, g_bias, g_n


def compose_query(weight: Tensor, bias: Tensor | None, n: Tensor) -> tuple[Tensor, Tensor | None]:
    """The fused projection of ``Q_pos`` and ``Q_neg = Q_pos N`` (see :class:`_ComposeQuery`);
    rows (and heads of the output) are ordered per head as (positive, negative) pairs."""
    return _ComposeQuery.apply(weight, bias, n)
