"""Differential attention (Ye et al. 2024, arXiv 2410.05258): ``softmax(S1) - lam softmax(S2)``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gpam.functional._checks import as_lambda, check_dropout, check_qkv, check_same, default_scale
from gpam.functional._gqa import mix
from gpam.functional._masks import explicit_mask
from gpam.functional._prep import difference_weights
from gpam.functional.softmax import sdpa


def diff_attention(
    q1: Tensor,
    q2: Tensor,
    k1: Tensor,
    k2: Tensor,
    v: Tensor,
    *,
    lam: float | Tensor = 0.8,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Differential attention core ``(softmax(Q1 K1^T s) - lam softmax(Q2 K2^T s)) V``.

    Shapes: q1, q2 (B, H, Lq, d); k1, k2 (B, Hkv, Lk, d); v (B, Hkv, Lk, Dv) (Dv = 2d in the
    paper) -> (B, H, Lq, Dv). Rows of W sum to ``1 - lam`` (not affine). ``lam`` is a float or a
    tensor (scalar or per head); Ye et al. reparameterise it per layer, and the per-head RMSNorm and
    ``(1 - lam_init)`` factor live in ``gpam.MultiheadAttention``, not here. Scale ``d^-1/2``.
    """
    check_qkv(q1, k1, v, names=("q1", "k1", "v"))
    check_same("q2", q2, "q1", q1)
    check_same("k2", k2, "k1", k1)
    check_dropout(dropout_p)
    # lam may be negative (Ye et al.'s learned reparameterisation): only its form is checked.
    lam_v = as_lambda("lam", lam, q1.shape[1], q1, nonnegative=False)
    s = default_scale(scale, q1.shape[-1])
    if return_weights:
        m = explicit_mask(attn_mask, is_causal, q1, k1)
        w = difference_weights(m, q1, k1, q2, k2, None, lam_v, s, dropout_p)
        return mix(w, v), w
    o1 = _sdpa_value_chunks(q1, k1, v, attn_mask, is_causal, dropout_p, s)
    o2 = _sdpa_value_chunks(q2, k2, v, attn_mask, is_causal, dropout_p, s)
    return o1 - lam_v * o2


def _sdpa_value_chunks(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, p: float, s: float
) -> Tensor:
    """SDPA with v wider than q (2d in Ye et al.) as calls on d-wide slices of v.

    Fused SDPA kernels (CPU flash, CUDA flash) need equal q/v widths and otherwise fall back to an
    L x L path; slicing v keeps memory linear in L. With dropout one call keeps one dropout mask.
    """
    d = q.shape[-1]
    if v.shape[-1] == d or v.shape[-1] % d or p > 0:
        return sdpa(q, k, v, mask, causal, p, s)
    return torch.cat([sdpa(q, k, vi, mask, causal, p, s) for vi in v.split(d, dim=-1)], dim=-1)


def registry_op(
    q: Tensor, k: Tensor, v: Tensor, *, q2: Tensor | None = None, k2: Tensor | None = None,
    **kw: Any,
) -> Any:  # fmt: skip
    """``diff_attention`` in the registry's call form: ``q2``/``k2``, or, when both are omitted,
    the adjacent sub-heads (2i, 2i+1) of ``q`` and ``k`` as the pairs of head i (Ye et al.)."""
    if (q2 is None) != (k2 is None):
        raise ValueError("q2 and k2 must be given together for attention('diff', ...)")
    if q2 is None:
        if q.dim() != 4 or q.shape[1] % 2 or k.dim() != 4 or k.shape[1] % 2:
            raise ValueError(
                "q and k must be 4-D with an even number of heads (sub-head pairs) for "
                "attention('diff', ...) without q2/k2"
            )
        q, q2, k, k2 = q[:, 0::2], q[:, 1::2], k[:, 0::2], k[:, 1::2]
    return diff_attention(q, q2, k, k2, v, **kw)


def registry_example(q: Tensor, q_neg: Tensor, k: Tensor, v: Tensor, lam: float) -> Any:
    """Ye et al.'s equal-cost layout: H/2 heads of two sub-heads, values of width 2D."""
    b, h, length, d = v.shape
    v2 = v.view(b, h // 2, 2, length, d).transpose(2, 3).reshape(b, h // 2, length, 2 * d)
    return (q, k, v2), {}
