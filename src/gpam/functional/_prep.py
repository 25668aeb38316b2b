"""Steps every variant repeats: the input preamble and the explicit (L x L) softmax maps."""

from __future__ import annotations

import torch
from torch import Tensor

from gpam.functional._checks import check_dropout, check_qkv, default_scale, dropout
from gpam.functional._gqa import scores
from gpam.functional._masks import ExplicitMask


def prepare(
    q: Tensor, k: Tensor, v: Tensor, dropout_p: float, scale: float | None
) -> tuple[Tensor, Tensor, float]:
    """Validate ``q (B, H, Lq, D)``, ``k (B, Hkv, Lk, D)``, ``v (B, Hkv, Lk, Dv)``, ``dropout_p``
    and ``scale``; return ``(k, v)`` (not copied to H heads: see ``gpam.functional._gqa``) and the
       scale (default ``D**-0.5``)."""
    check_qkv(q, k, v)
    check_dropout(dropout_p)
    s = default_scale(scale, q.shape[-1])
    return k, v, s


def softmax_map(m: ExplicitMask, q: Tensor, k: Tensor, scale: float, dropout_p: float) -> Tensor:
    """Masked ``softmax(q k^T * scale)`` with dropout: (B, H, Lq, Lk); k has Hkv heads."""
    return dropout(m.softmax(scores(q, k) * scale), dropout_p)


def difference_weights(
    m: ExplicitMask,
    q_pos: Tensor,
    k_pos: Tensor,
    q_neg: Tensor,
    k_neg: Tensor,
    lam_pos: float | Tensor | None,
    lam_neg: float | Tensor,
    scale: float,
    dropout_p: float,
    *,
    affine: bool = False,
) -> Tensor:
    """``lam_pos * A_pos - lam_neg * A_neg`` of two masked softmax maps: (B, H, Lq, Lk).

    ``lam_pos=None`` means 1 (no multiply). ``affine=True``: ``lam_pos = 1 + lam_neg`` (ignored
    here), mixed as ``lerp(A_pos, A_neg, -lam_neg)`` (``gpam.functional.lambdas.affine_mix``).
    Each map gets its own dropout mask (the explicit paths of daGPAM, Diff and Diff V2).
    """
    a_pos = softmax_map(m, q_pos, k_pos, scale, dropout_p)
    a_neg = softmax_map(m, q_neg, k_neg, scale, dropout_p)
    if affine:
        return torch.lerp(a_pos, a_neg, -lam_neg)
    return (a_pos if lam_pos is None else lam_pos * a_pos) - lam_neg * a_neg
