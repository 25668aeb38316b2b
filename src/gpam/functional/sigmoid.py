"""Sigmoid attention (Ramapuram et al., ICLR 2025, arXiv 2409.04431): ``sigmoid(S + b)``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gpam.functional._checks import data_checks_enabled, dropout
from gpam.functional._gqa import mix, scores
from gpam.functional._masks import explicit_mask
from gpam.functional._prep import prepare


def sigmoid_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    bias: float | Tensor | None = None,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Elementwise sigmoid attention ``sigmoid(q k^T * scale + bias + mask) v``.

    Shapes: q (B, H, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv) -> (B, H, Lq, Dv).
    ``bias`` defaults to ``-log(n)`` (the paper's recommendation) with ``n`` the number of keys
    each row can see: ``Lk`` without a mask, fewer under causal or padding masks, so that cached
    decoding equals a full pass and padding does not change the result. A float or a tensor
    broadcastable to (B, H, Lq, 1) overrides it. Masked weights are 0; rows do not sum to a
    constant. Computed explicitly (L x L).
    """
    k, v, s = prepare(q, k, v, dropout_p, scale)
    m = explicit_mask(attn_mask, is_causal, q, k)
    if bias is None:
        if m.keep is None:
            bias = -math.log(k.shape[2])
        else:
            visible = m.keep.sum(-1, keepdim=True, dtype=q.dtype)
            bias = -torch.log(visible.clamp_min(1.0))
    elif isinstance(bias, Tensor):
        finite = not data_checks_enabled(bias) or bool(torch.isfinite(bias).all())  # no sync on GPU
        if not bias.is_floating_point() or not finite:
            raise ValueError("bias must be a finite floating-point tensor, a number or None")
        bias = bias.to(q.dtype)
    elif isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias):
        raise ValueError(f"bias must be a finite number, a tensor or None, got {bias!r}")
    w = m.zero_masked(m.add_bias(scores(q, k) * s + bias).sigmoid())
    w = dropout(w, dropout_p)
    out = mix(w, v)
    return (out, w) if return_weights else out
