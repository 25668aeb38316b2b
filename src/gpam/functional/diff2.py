"""Differential Transformer V2 (microsoft/unilm, January 2026): 2H query heads, one SDPA call.

Query head ``2i`` is positive and ``2i+1`` negative; both attend with the same key/value head.
Output head ``i`` is ``attn[2i] - lam[i] * attn[2i+1]`` with a per-token, per-head ``lam`` (the
layer computes ``sigmoid(lambda_proj(x))``), so rows of W sum to ``1 - lam``. This is daGPAM with
``affine=False``, ``lam_pos = 1``, a separate negative query and a per-token ``lam_neg``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gpam.functional._checks import check_dropout, check_qkv, default_scale
from gpam.functional._gqa import SDPA_GQA, mix
from gpam.functional._masks import explicit_mask, sdpa_mask, zero_dead
from gpam.functional._prep import difference_weights
from gpam.functional.lambdas import check_token_lambda


def diff2_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    lam: float | Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Diff V2 core ``(softmax(Q_2i K^T s) - lam_i softmax(Q_2i+1 K^T s)) V`` for each head i.

    Shapes: q (B, 2H, Lq, D) with heads (2i, 2i+1) = (positive, negative) query of head i;
    k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv) with Hkv dividing H -> (B, H, Lq, Dv).
    ``lam``: a float or a tensor broadcastable to (B, H, Lq, 1) (per head and per token; the
    layer's ``sigmoid(lambda_proj(x))`` lies in (0, 1)); rows of W sum to ``1 - lam``. Masks
    (shape broadcastable to (B, H, Lq, Lk)) and ``is_causal`` apply to both query sets.
    The default path is ONE ``F.scaled_dot_product_attention`` call over the 2H query heads
    (``enable_gqa`` where torch has it; otherwise the query groups are folded into the length
    axis, which needs no copy of K/V); ``return_weights=True`` builds W (B, H, Lq, Lk).
    Dropout applies to each softmax map independently.
    """
    check_qkv(q, k, v, names=("q", "k", "v"))
    check_dropout(dropout_p)
    b, h2, lq, d = q.shape
    if h2 % 2 or (h2 // 2) % k.shape[1]:
        raise ValueError(
            "q must hold 2H query heads (pairs of positive and negative heads) with the key/value "
            f"heads dividing H; got {h2} query heads and {k.shape[1]} key/value heads"
        )
    h = h2 // 2
    lam_t = check_token_lambda("lam", lam, (b, h, lq), q, nonnegative=False)
    s = default_scale(scale, d)
    q_pos = q[:, 0::2]  # (B, H, Lq, D) view: also the reference shape for masks
    if return_weights:
        q_neg = q[:, 1::2]
        m = explicit_mask(attn_mask, is_causal, q_pos, k)
        w = difference_weights(m, q_pos, k, q_neg, k, None, lam_t, s, dropout_p)
        return mix(w, v), w
    mask, causal, dead = sdpa_mask(attn_mask, is_causal, q_pos, k)
    if mask is not None:
        mask = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))
        if mask.shape[1] > 1:
            mask = mask.repeat_interleave(2, dim=1)  # one mask per query head of the pair
    out = _one_call(q, k, v, mask, causal, dropout_p, s)  # (B, 2H, Lq, Dv)
    out = out.unflatten(1, (h, 2))
    out = out[:, :, 0] - lam_t * out[:, :, 1]
    return zero_dead(out, dead, attn_mask)


def _one_call(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, p: float, s: float
) -> Tensor:
    """One SDPA call of the 2H query heads over Hkv shared key/value heads."""
    if k.shape[1] == q.shape[1]:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal, scale=s
        )
    if SDPA_GQA:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal, scale=s, enable_gqa=True
        )
    return fold_groups(q, k, v, mask, causal, p, s)


def fold_groups(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, p: float, s: float
) -> Tensor:
    """Grouped-query SDPA without copying K/V: a group's query heads become extra query rows.

    q (B, G*Hkv, Lq, D) -> (B, Hkv, G*Lq, D); the mask (and causality, made explicit) is repeated
    over the folded rows. Used where SDPA has no ``enable_gqa``.
    """
    b, hq, lq, d = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    g = hq // hkv
    qf = q.reshape(b, hkv, g * lq, d)
    if causal:
        keep = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril()
        mask = keep if mask is None else (mask & keep if mask.dtype == torch.bool else
                                          mask.masked_fill(~keep, float("-inf")))  # fmt: skip
    if mask is not None:
        mask = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))
        mb, mh = mask.shape[0], mask.shape[1]
        mask = mask.expand(mb, mh, lq, lk)
        if mh == 1:
            mask = mask[:, :, None].expand(mb, 1, g, lq, lk).reshape(mb, 1, g * lq, lk)
        else:  # per query head: group g of kv head j holds query heads j*g .. j*g + g - 1
            mask = mask.reshape(mb, hkv, g * lq, lk)
    out = F.scaled_dot_product_attention(qf, k, v, attn_mask=mask, dropout_p=p, scale=s)
    return out.reshape(b, hq, lq, v.shape[-1])


def registry_example(q: Tensor, q_neg: Tensor, k: Tensor, v: Tensor, lam: float) -> Any:
    """Heads (2h, 2h+1) = (q, q_neg) share one K/V head, one SDPA call."""
    b, h, length, d = q.shape
    return (torch.stack((q, q_neg), dim=2).reshape(b, 2 * h, length, d), k, v), {"lam": lam}
