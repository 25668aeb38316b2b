"""daGPAM: dual-attention generalized probabilistic attention (Heo & Choi 2024, arXiv 2410.15578).

``W = lam_pos * softmax(Q_pos K^T s + M) - lam_neg * softmax(Q_neg K^T s + M)``; keys and values
are shared, so ``W V = lam_pos * (A_pos V) - lam_neg * (A_neg V)`` and no L x L matrix is needed.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from gpam.functional._checks import (
    as_lambda,
    check_dropout,
    check_qkv,
    check_same,
    default_scale,
    dropout,
    expand_kv,
    explicit_mask,
    sdpa_mask,
)


def resolve_lambdas(
    lam_pos: float | Tensor | None,
    lam_neg: float | Tensor,
    affine: bool,
    num_heads: int,
    ref: Tensor,
) -> tuple[float | Tensor, float | Tensor]:
    """Validated ``(lam_pos, lam_neg)``; affine: ``lam_pos = 1 + lam_neg`` (rows sum to 1)."""
    lam_neg = as_lambda("lam_neg", lam_neg, num_heads, ref)
    if affine:
        if lam_pos is not None:
            raise ValueError(
                "lam_pos is fixed to 1 + lam_neg when affine=True; pass affine=False to set it"
            )
        return 1.0 + lam_neg, lam_neg
    if lam_pos is None:
        raise ValueError(
            "lam_pos is required when affine=False (rows then sum to lam_pos - lam_neg)"
        )
    return as_lambda("lam_pos", lam_pos, num_heads, ref), lam_neg


def dagpam_attention(
    q_pos: Tensor,
    q_neg: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    lam_pos: float | Tensor | None = None,
    lam_neg: float | Tensor = 0.5,
    affine: bool = True,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """daGPAM attention: an affine (or, with ``affine=False``, free) mix of two softmax maps.

    Shapes: q_pos, q_neg (B, H, Lq, D); k (B, Hkv, Lk, D); v (B, Hkv, Lk, Dv) -> (B, H, Lq, Dv).
    ``lam_neg >= 0`` (float, or tensor of shape (H,) for per-head values). With ``affine=True``
    (default) ``lam_pos = 1 + lam_neg`` and every row of W sums to 1 with entries in
    ``[-lam_neg, lam_pos]``; with ``affine=False`` both are free and rows sum to
    ``lam_pos - lam_neg``. ``lam_neg = 0`` is exactly softmax attention.
    On CUDA with Triton installed (and no mask, dropout or weights requested) a fused kernel
    reads K/V once for both maps (``GPAM_FUSED=0`` turns it off); otherwise the path runs
    ``F.scaled_dot_product_attention`` twice (memory linear in L);
    ``return_weights=True`` computes and returns the explicit W of shape (B, H, Lq, Lk).
    Dropout (``dropout_p``) is applied to each softmax map independently.
    """
    check_qkv(q_pos, k, v, names=("q_pos", "k", "v"))
    check_same("q_neg", q_neg, "q_pos", q_pos)
    check_dropout(dropout_p)
    num_heads = q_pos.shape[1]
    lp, ln = resolve_lambdas(lam_pos, lam_neg, affine, num_heads, q_pos)
    s = default_scale(scale, q_pos.shape[-1])
    if q_pos.is_cuda and _use_fused(q_pos, k, v, attn_mask, dropout_p, return_weights):
        from gpam.kernels import dagpam_fused

        return dagpam_fused(q_pos, q_neg, k, v, lp, ln, bool(is_causal), s)
    k, v = expand_kv(k, num_heads), expand_kv(v, num_heads)
    if return_weights:
        m = explicit_mask(attn_mask, is_causal, q_pos, k)
        kt = k.transpose(-2, -1)
        a_pos = dropout(m.softmax((q_pos @ kt) * s), dropout_p)
        a_neg = dropout(m.softmax((q_neg @ kt) * s), dropout_p)
        w = lp * a_pos - ln * a_neg
        return w @ v, w
    mask, causal, dead = sdpa_mask(attn_mask, is_causal, q_pos, k)
    o_pos = F.scaled_dot_product_attention(
        q_pos, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal, scale=s
    )
    o_neg = F.scaled_dot_product_attention(
        q_neg, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal, scale=s
    )
    if affine:
        # lam_pos * o_pos - lam_neg * o_neg == o_neg + lam_pos * (o_pos - o_neg), in one fused op.
        out = torch.lerp(o_neg, o_pos, lp if isinstance(lp, Tensor) else float(lp))
    else:
        out = lp * o_pos - ln * o_neg
    return out if dead is None else out.masked_fill(dead, 0.0)


def _use_fused(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, dropout_p: float, weights: bool
) -> bool:
    """Whether the fused Triton kernel applies (CUDA, triton, supported shapes, no mask/dropout)."""
    if os.environ.get("GPAM_FUSED", "1") == "0" or v.shape[-1] != q.shape[-1]:
        return False
    from gpam.kernels import fused_dagpam_available

    return fused_dagpam_available(
        q, k, attn_mask=attn_mask, dropout_p=dropout_p, return_weights=weights
    )
