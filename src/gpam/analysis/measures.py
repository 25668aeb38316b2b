"""Rank-collapse and attention-map measures (Dong, Cordonnier & Loukas 2021, arXiv 2103.03404).

All functions take a batch of token matrices ``x`` of shape ``(..., n, d)`` (n tokens of width d)
and reduce the last two dimensions, returning a tensor of shape ``(...)``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_tokens(name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (..., n, d), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def residual(x: Tensor) -> Tensor:
    """``res(X) = X - 1 x^T`` with ``x`` the token mean (Dong et al.'s plotting choice).

    Shape: (..., n, d) -> (..., n, d). Identical tokens give exactly a zero residual.
    """
    _check_tokens("x", x)
    return x - x.mean(dim=-2, keepdim=True)


def norm_1(a: Tensor) -> Tensor:
    """Matrix 1-norm: the largest absolute column sum. (..., n, d) -> (...)."""
    _check_tokens("a", a)
    return a.abs().sum(dim=-2).amax(dim=-1)


def norm_inf(a: Tensor) -> Tensor:
    """Matrix inf-norm: the largest absolute row sum. (..., n, d) -> (...)."""
    _check_tokens("a", a)
    return a.abs().sum(dim=-1).amax(dim=-1)


def composite_norm(a: Tensor) -> Tensor:
    """Dong et al.'s composite norm ``sqrt(||A||_1 * ||A||_inf)``. (..., n, d) -> (...)."""
    return torch.sqrt(norm_1(a) * norm_inf(a))


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with 0 where ``den == 0`` (an all-zero X has no residual to speak of)."""
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.zeros_like(num))


def relative_residual_fro(x: Tensor) -> Tensor:
    """``||res(X)||_F / ||X||_F`` (token-mean residual). (..., n, d) -> (...), values in [0, 1]."""
    r = residual(x)
    return _ratio(
        torch.linalg.vector_norm(r, dim=(-2, -1)), torch.linalg.vector_norm(x, dim=(-2, -1))
    )


def relative_residual_composite(x: Tensor) -> Tensor:
    """``||res(X)||_{1,inf} / ||X||_{1,inf}``, the quantity Dong et al.'s curves plot. -> (...)."""
    return _ratio(composite_norm(residual(x)), composite_norm(x))


def row_entropy(p: Tensor, eps: float = 1e-12) -> Tensor:
    """Mean over rows of ``-sum_j p_ij log p_ij`` (nats) of a map (..., Lq, Lk) -> ().

    Rows are renormalised to sum 1 first, so it can also be applied to ``|W|`` of signed or
    unnormalised maps (then it is the entropy of the row's share of absolute weight).
    """
    _check_tokens("p", p)
    p = p.abs()
    p = p / p.sum(dim=-1, keepdim=True).clamp_min(eps)
    ent = -(p * torch.log(p.clamp_min(eps))).sum(dim=-1)
    return ent.mean()


def row_max(w: Tensor) -> Tensor:
    """Mean over rows of the largest weight ``max_j W_ij`` of a map (..., Lq, Lk) -> ()."""
    _check_tokens("w", w)
    return w.amax(dim=-1).mean()
