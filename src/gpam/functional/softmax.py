"""Softmax attention: the convex baseline (weights >= 0, rows sum to 1)."""

from __future__ import annotations

from torch import Tensor

from gpam.functional._gqa import mix, sdpa_gqa
from gpam.functional._masks import explicit_mask, sdpa_mask, zero_dead
from gpam.functional._prep import prepare, softmax_map


def softmax_attention(
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
    """Scaled dot-product softmax attention, ``softmax(q k^T * scale + mask) v``.

    Shapes: q (B, H, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv) -> (B, H, Lq, Dv); Hkv divides H.
    Uses ``F.scaled_dot_product_attention`` (O(L) memory) unless ``return_weights`` asks for the
    explicit (B, H, Lq, Lk) weights. Rows with every key masked give zeros.
    """
    k, v, s = prepare(q, k, v, dropout_p, scale)
    if return_weights:
        w = softmax_map(explicit_mask(attn_mask, is_causal, q, k), q, k, s, dropout_p)
        return mix(w, v), w
    return sdpa(q, k, v, attn_mask, is_causal, dropout_p, s)


def sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None,
    is_causal: bool,
    dropout_p: float,
    scale: float,
) -> Tensor:
    """SDPA with fully-masked rows giving exact zeros (no NaN in outputs or gradients); k/v may
    have fewer (grouped) heads than q."""
    mask, causal, dead = sdpa_mask(attn_mask, is_causal, q, k)
    out = sdpa_gqa(q, k, v, mask, causal, dropout_p, scale)
    return zero_dead(out, dead, attn_mask)
