"""Gated attention (Qiu et al. 2025, arXiv 2505.06708; used in Qwen3-Next): softmax attention
whose output is multiplied by a query-dependent, head-specific gate.

``Y = SDPA(Q, K, V) * gate`` with ``gate = sigmoid(X W_g)`` computed by the layer from its
query-side input X (the paper's best position, G1: right after SDPA, before the output
projection). Elementwise (one gate per head and dimension, the default) or headwise (one per
head, broadcast over its dimensions). The gate is not a change of the weights W: W is softmax's
(rows sum to 1); the gate scales each head's output and so breaks the low-rank linear path from
V to the output projection.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gpam.functional._checks import check_tensor
from gpam.functional.softmax import softmax_attention


def gated_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    gate: Tensor,
    *,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """``softmax_attention(q, k, v) * gate``.

    Shapes: q (B, H, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv) -> (B, H, Lq, Dv); ``gate``
    broadcastable to (B, H, Lq, Dv) (elementwise (B, H, Lq, Dv) or headwise (B, H, Lq, 1)),
    values in [0, 1] (the layer's ``sigmoid(x W_g)``; not checked). Masks, causality, dropout
    and grouped-query heads as ``softmax_attention``; rows with every key masked give zeros.
    ``return_weights=True`` also returns softmax's W (B, H, Lq, Lk), before the gate.
    """
    check_tensor("gate", gate)
    want = (q.shape[0], q.shape[1], q.shape[2], v.shape[-1])
    if any(g not in (1, w) for g, w in zip(gate.shape, want)) or gate.shape[2] != want[2]:
        raise ValueError(
            f"gate must be broadcastable to (B, H, Lq, Dv) = {want} with one row per query, "
            f"got shape {tuple(gate.shape)}"
        )
    res = softmax_attention(
        q, k, v, attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout_p, scale=scale,
        return_weights=return_weights,
    )  # fmt: skip
    if return_weights:
        out, w = res
        return out * gate.to(out.dtype), w
    return res * gate.to(res.dtype)  # type: ignore[operator]


def registry_example(q: Tensor, q_neg: Tensor, k: Tensor, v: Tensor, lam: float) -> Any:
    """An elementwise gate ``sigmoid(q_neg)`` (the cost of a full-width gate)."""
    return (q, k, v), {"gate": torch.sigmoid(q_neg)}
