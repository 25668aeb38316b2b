"""Dong et al.'s single-layer rank-collapse bound evaluated from a layer's actual weights.

Dong, Cordonnier & Loukas (ICML 2021), single-head self-attention ``SA(X) = softmax(X W_Q W_K^T
X^T / sqrt(d_qk)) X W_V``: ``||res(SA(X))||_{1,inf} <= (4 gamma beta / sqrt(d_qk)) *
||res(X)||_{1,inf}^3`` with ``||W_QK||_1 ||W_V||_{1,inf} <= beta``; with H heads the factor
gains H. gamma is a constant depending on the attention entries whose exact definition we could
not confirm: it is a parameter, default 1. Here each head's value path includes its slice of the
output projection (``W_VO = W_V^h W_O^h``, d x d), the heads' factors are summed (at most H times
the largest), and biases are ignored (the bound is stated for bias-free layers).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gpam.analysis.measures import composite_norm, norm_1, residual


def head_betas(mha: nn.Module) -> Tensor:
    """Per-head ``beta_h = ||W_QK^h||_1 * ||W_VO^h||_{1,inf}`` of a softmax-type layer -> (H,).

    In Dong et al.'s row convention ``W_Q^h`` (E x d) is the transpose of the head's rows of
    ``q_proj.weight``; ``W_QK^h = W_Q^h W_K^h^T`` and ``W_VO^h = W_V^h W_O^h`` are E x E.
    """
    h, d = mha.num_heads, mha.head_dim
    wq, wk = mha.q_proj.weight.detach(), mha.k_proj.weight.detach()
    wv, wo = mha.v_proj.weight.detach(), mha.out_proj.weight.detach()
    betas = []
    for i in range(h):
        rows = slice(i * d, (i + 1) * d)
        w_qk = wq[rows].T @ wk[rows]  # (E, E)
        w_vo = wv[rows].T @ wo[:, rows].T  # (E, E)
        betas.append(norm_1(w_qk) * composite_norm(w_vo))
    return torch.stack(betas)


def bound_factor(mha: nn.Module, gamma: float = 1.0) -> float:
    """``sum_h 4 gamma beta_h / sqrt(d_qk)``: the bound is this times ``||res(X)||_{1,inf}^3``."""
    if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")
    return float(4.0 * gamma * head_betas(mha).sum() / math.sqrt(mha.head_dim))


def shrink(x_in: Tensor, x_out: Tensor) -> Tensor:
    """Measured per-sample shrink ``||res(out)||_{1,inf} / ||res(in)||_{1,inf}``.

    Shapes: (B, n, d), (B, n, d) -> (B,).
    """
    den = composite_norm(residual(x_in))
    num = composite_norm(residual(x_out))
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), 0.0)


def bound_shrink(x_in: Tensor, factor: float) -> Tensor:
    """Bound on the shrink: ``factor * ||res(in)||_{1,inf}^2``; (B, n, d) -> (B,)."""
    return factor * composite_norm(residual(x_in)) ** 2
