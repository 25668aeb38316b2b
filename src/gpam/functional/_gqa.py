"""Grouped-query attention (``Hkv`` key/value heads shared by ``H = G * Hkv`` query heads)
without copying K/V: SDPA's ``enable_gqa`` (torch >= 2.5) and, for explicit (L x L) paths, the
query's groups folded into its length axis, (B, H, L, D) -> (B, Hkv, G*L, D).

Query head ``j`` attends with key/value head ``j // G``, as ``expand_kv`` repeats them; that copy
is kept only for SDPA on torch < 2.5 (:data:`SDPA_GQA` False).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gpam.functional._checks import expand_kv

#: whether this torch's SDPA takes ``enable_gqa`` (grouped K/V heads without a copy; torch >= 2.5)
SDPA_GQA: bool = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 5)


def sdpa_gqa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
) -> Tensor:
    """``F.scaled_dot_product_attention`` with k/v of Hkv heads dividing q's H: (B, H, Lq, Dv)."""
    kw = {"attn_mask": mask, "dropout_p": dropout_p, "is_causal": causal, "scale": scale}
    h = q.shape[1]
    if k.shape[1] == h:
        return F.scaled_dot_product_attention(q, k, v, **kw)
    if SDPA_GQA:
        return F.scaled_dot_product_attention(q, k, v, **kw, enable_gqa=True)
    return F.scaled_dot_product_attention(q, expand_kv(k, h), expand_kv(v, h), **kw)


def _folded(q: Tensor, hkv: int) -> Tensor:
    """(B, H, L, D) -> (B, Hkv, G*L, D): each key/value head's query heads as extra rows."""
    b, h, length, d = q.shape
    return q.reshape(b, hkv, (h // hkv) * length, d)


def scores(q: Tensor, k: Tensor) -> Tensor:
    """``q @ k^T``: q (B, H, Lq, D), k (B, Hkv, Lk, D) -> (B, H, Lq, Lk), k not copied."""
    b, h, lq, _ = q.shape
    if k.shape[1] == h:
        return q @ k.transpose(-2, -1)
    return (_folded(q, k.shape[1]) @ k.transpose(-2, -1)).view(b, h, lq, k.shape[2])


def l1_distances(q: Tensor, k: Tensor) -> Tensor:
    """``cdist(q, k, p=1)``: q (B, H, Lq, D), k (B, Hkv, Lk, D) -> (B, H, Lq, Lk)."""
    b, h, lq, _ = q.shape
    if k.shape[1] == h:
        return torch.cdist(q, k, p=1.0)
    return torch.cdist(_folded(q, k.shape[1]), k, p=1.0).view(b, h, lq, k.shape[2])


def mix(w: Tensor, v: Tensor) -> Tensor:
    """``w @ v``: w (B, H, Lq, Lk), v (B, Hkv, Lk, Dv) -> (B, H, Lq, Dv), v not copied."""
    b, h, lq, _ = w.shape
    if v.shape[1] == h:
        return w @ v
    return (_folded(w, v.shape[1]) @ v).view(b, h, lq, v.shape[-1])
