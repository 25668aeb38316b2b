"""Compositional De-Attention (Tay et al., NeurIPS 2019): ``tanh(alpha S) * g(N)``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gpam.functional._checks import dropout
from gpam.functional._gqa import l1_distances, mix
from gpam.functional._gqa import scores as qk_scores
from gpam.functional._masks import explicit_mask
from gpam.functional._prep import prepare

GATES = ("sigmoid", "mean")


def coda_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    gate: str = "sigmoid",
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """CoDA weights ``tanh(alpha * S) * g(N)``, ``N_ij = -beta ||q_i - k_j||_1 / sqrt(d)``.

    Shapes: q (B, H, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv) -> (B, H, Lq, Dv).
    No softmax, no row normalisation: entries lie in (-1, 1). ``gate="sigmoid"`` (default) uses
    ``g = 2 sigmoid(N)`` (N <= 0, so plain sigmoid would stay below 0.5); ``gate="mean"`` uses
    ``sigmoid(N - mean_j N)`` over visible keys. alpha = beta = 1 by default (CoDA's own defaults
    are unconfirmed). Masked entries are 0; a finite additive mask is added to S. Explicit (L x L).
    """
    k, v, s = prepare(q, k, v, dropout_p, scale)
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    for name, val in (("alpha", alpha), ("beta", beta)):
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
            raise ValueError(f"{name} must be a finite number, got {val!r}")
    d = q.shape[-1]
    m = explicit_mask(attn_mask, is_causal, q, k)
    scores = m.add_bias(qk_scores(q, k) * s)
    low = q.dtype in (torch.float16, torch.bfloat16)  # cdist has no half kernels on CPU
    dist = l1_distances(q.float(), k.float()).to(q.dtype) if low else l1_distances(q, k)
    n = -beta * dist / math.sqrt(d)
    if gate == "sigmoid":
        g = 2.0 * torch.sigmoid(n)
    else:
        if m.keep is None:
            centre = n.mean(-1, keepdim=True)
        else:
            keep = m.keep.expand_as(n)
            count = keep.sum(-1, keepdim=True).clamp_min(1)
            centre = n.masked_fill(~keep, 0.0).sum(-1, keepdim=True) / count
        g = torch.sigmoid(n - centre)
    w = dropout(m.zero_masked(torch.tanh(alpha * scores) * g), dropout_p)
    out = mix(w, v)
    return (out, w) if return_weights else out
