"""Cog attention (Lv et al. 2024, arXiv 2411.07176): ``sign(S) * softmax(|S| + M)``."""

from __future__ import annotations

from torch import Tensor

from gpam.functional._checks import dropout
from gpam.functional._gqa import mix
from gpam.functional._gqa import scores as qk_scores
from gpam.functional._masks import explicit_mask
from gpam.functional._prep import prepare


def cog_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Signed attention: weights ``sign(S) * softmax(|S| + mask)``, ``S = q k^T * scale``.

    Shapes: q (B, H, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv) -> (B, H, Lq, Dv). The mask is
    applied to ``|S|`` so masked weights are exactly 0; rows have sum of |W| = 1. ``sign`` has zero
    gradient, so gradients reach the logits only through ``|S|``. Computed explicitly (L x L).
    """
    k, v, s = prepare(q, k, v, dropout_p, scale)
    scores = qk_scores(q, k) * s
    m = explicit_mask(attn_mask, is_causal, q, k)
    w = dropout(scores.sign() * m.softmax(scores.abs()), dropout_p)
    out = mix(w, v)
    return (out, w) if return_weights else out
