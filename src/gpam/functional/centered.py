"""Centered attention (Nait Saada, Naderi & Tanner, ICML 2025): softmax minus uniform.

``W = softmax(S + M) - U`` with ``U`` the uniform map over each row's allowed keys (``1/n_i`` on
the ``n_i`` keys the mask and causality keep, 0 elsewhere). Rows sum to 0: the attention matrix's
outlier singular value (the spectral gap behind rank collapse) is removed. Since
``U V`` is the mean of the allowed values, ``W V = softmax(S) V - mean(allowed V)``: one SDPA call
plus a masked mean, no L x L matrix unless the caller's mask already is one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gpam.functional._checks import expand_kv
from gpam.functional._gqa import mix
from gpam.functional._masks import explicit_mask
from gpam.functional._prep import prepare, softmax_map
from gpam.functional.softmax import sdpa


def centered_attention(
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
    """Centered attention ``(softmax(q k^T s + mask) - U) v``; rows of W sum to 0.

    Shapes: q (B, H, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv) -> (B, H, Lq, Dv); Hkv divides
    H. ``U`` is uniform over the keys each row may see (mask and ``is_causal``, top-left aligned);
    rows that see no key give zeros. Dropout (training) applies to the softmax map only, not to
    ``U``. The default path is ``F.scaled_dot_product_attention`` minus the masked mean of ``v``
    (memory linear in L for key-padding and causal masks); ``return_weights=True`` builds W.
    """
    k, v, s = prepare(q, k, v, dropout_p, scale)
    if return_weights:
        m = explicit_mask(attn_mask, is_causal, q, k)
        a = softmax_map(m, q, k, s, dropout_p)
        keep = _keep(m.keep, is_causal=False, q=q, k=k)
        w = a - keep / keep.sum(-1, keepdim=True).clamp_min(1.0)
        return mix(w, v), w
    out = sdpa(q, k, v, attn_mask, is_causal, dropout_p, s)
    return _grouped_sub(out, allowed_mean(v, attn_mask, is_causal, q, k))


def _grouped_sub(out: Tensor, mean: Tensor) -> Tensor:
    """``out (B, H, Lq, Dv) - mean``, the mean per query head or per (grouped) key/value head."""
    b, h, lq, dv = out.shape
    hm = mean.shape[1]
    if hm in (1, h):
        return out - mean
    return (out.view(b, hm, h // hm, lq, dv) - mean[:, :, None]).view(b, h, lq, dv)


def allowed_mean(
    v: Tensor, attn_mask: Tensor | None, is_causal: bool, q: Tensor, k: Tensor
) -> Tensor:
    """Mean of the values each query row may see: (B, H, Lq or 1, Dv); 0 for rows seeing none.

    ``v`` may have fewer (grouped) heads than ``q``: the mean then has v's heads unless the mask
    has one per query head (then v is repeated to H heads). Key-only masks (broadcast over queries)
    and causality use sums and cumulative sums of ``v``; a mask that varies per query row is
    applied as a matrix product with the (bool) mask itself.
    """
    m = explicit_mask(attn_mask, False, q, k)
    lq, lk = q.shape[2], k.shape[2]
    keep = m.keep
    if keep is not None and keep.dim() == 4 and keep.shape[1] != 1:
        v = expand_kv(v, q.shape[1])  # a per-head mask: each query head sees its own keys
    if keep is not None and keep.shape[-2] != 1:
        if is_causal:  # a per-row mask is already L x L: combine and multiply
            keep = keep & torch.ones(lq, lk, dtype=torch.bool, device=v.device).tril()
        keep = keep.to(v.dtype)
        count = keep.sum(-1, keepdim=True)
        return (keep @ v) / count.clamp_min(1.0)
    if keep is None:
        weights = torch.ones(1, 1, lk, 1, dtype=v.dtype, device=v.device)
    else:
        weights = keep.to(v.dtype).transpose(-2, -1)  # (B|1, H|1, Lk, 1)
    vs, cs = v * weights, weights.expand(*v.shape[:2], lk, 1)
    if not is_causal:
        return vs.sum(-2, keepdim=True) / cs.sum(-2, keepdim=True).clamp_min(1.0)
    # top-left causal: query i sees keys 0 .. min(i, Lk - 1)
    last = torch.arange(lq, device=v.device).clamp_max(lk - 1)
    vsum = vs.cumsum(-2).index_select(-2, last)
    csum = cs.cumsum(-2).index_select(-2, last)
    return vsum / csum.clamp_min(1.0)


def _keep(keep: Tensor | None, is_causal: bool, q: Tensor, k: Tensor) -> Tensor:
    """Float keep-mask of full shape (B, H, Lq, Lk) (1 = allowed), causal applied if asked."""
    b, h, lq, lk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    full = torch.ones(b, h, lq, lk, dtype=torch.bool, device=q.device)
    if keep is not None:
        full = full & keep
    if is_causal:
        full = full & torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril()
    return full.to(q.dtype)
