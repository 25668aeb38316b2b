"""Per-layer measures of the logit scale for ``gpam analyze phase``.

* :func:`jacobian_rel`: norm of an attention map's Jacobian with respect to its logits, per row,
  relative to a uniform softmax row (``||J||_F = sqrt(n - 1) / n`` for ``n`` keys).
* :func:`region_quantity`: Lemma 1's quantity ``4 sqrt(2) gamma ||W_QK||_1 ||W_VO||_{1,inf} /
  sqrt(d_qk)`` per head from a layer's actual weights (the layer is inside the rank-collapse
  region when it is < 1).
* :func:`logit_std`: standard deviation of the logits ``S = Q K^T * scale``.

The maps come from the library's own functional ops (``return_weights=True``) applied to the
layer's own queries and keys; nothing here re-implements a variant.

Jacobians per variant (``J`` the Jacobian of one row of the map w.r.t. that row's logits):

* softmax, and ``centered`` (softmax minus a constant, so the same logit Jacobian): closed form
  ``||J||_F^2 = sum p^2 - 2 sum p^3 + (sum p^2)^2`` for ``J = diag(p) - p p^T`` (evaluated
  without cancellation, see :func:`softmax_jacobian_fro`);
* daGPAM: ``sqrt(lam_pos^2 ||J+||^2 + lam_neg^2 ||J-||^2)`` (its two maps have separate logits);
* diff: the same with ``(1, lambda)`` over its two sub-head maps; diff2 likewise with its
  per-token lambda over the query-head pairs;
* cog (``sign(S) softmax(|S|)``): flipping the signs of rows and columns of ``J`` keeps its
  Frobenius norm, so it is the softmax formula on ``|W|`` (almost everywhere);
* sigmoid (elementwise): ``sqrt(sum w^2 (1 - w)^2)``;
* coda and any other variant: ``None`` (coda's gate depends on the queries and keys beyond the
  logits, so it has no Jacobian w.r.t. the logits alone).

``tests/test_analysis_phase.py`` checks every closed form against
``torch.autograd.functional.jacobian``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gpam.analysis.measures import composite_norm, norm_1
from gpam.functional import cog_attention, sigmoid_attention, softmax_attention
from gpam.nn.rotary import apply_rotary

JACOBIAN_NOTES = {
    "softmax": "closed form",
    "centered": "closed form of softmax (a constant shift of the map)",
    "dagpam": "sqrt(lam_pos^2 |J+|^2 + lam_neg^2 |J-|^2), closed forms",
    "diff": "sqrt(|J1|^2 + lambda^2 |J2|^2), closed forms",
    "diff2": "sqrt(|J+|^2 + lambda^2 |J-|^2) with its per-token lambda, closed forms",
    "cog": "softmax closed form on |W| (sign flips keep the Frobenius norm)",
    "sigmoid": "elementwise closed form sqrt(sum w^2 (1-w)^2)",
}


def softmax_jacobian_fro(p: Tensor) -> Tensor:
    """``||diag(p) - p p^T||_F`` per row of probabilities ``p`` (..., n) -> (...).

    Equal to ``sqrt(sum p^2 - 2 sum p^3 + (sum p^2)^2)``, evaluated without cancellation (a
    saturated row has a Jacobian far below 1): ``sum_i p_i^2 o_i^2 + 2 sum_{i<j} p_i^2 p_j^2``
    with ``o_i = sum_{j != i} p_j``, every term a sum of non-negative numbers.
    """
    before = _exclusive_cumsum(p)  # sum_{j<i} p_j
    after = _exclusive_cumsum(p.flip(-1)).flip(-1)  # sum_{j>i} p_j
    a = p * p
    diag = (a * (before + after) ** 2).sum(-1)
    cross = (a * _exclusive_cumsum(a)).sum(-1)
    return (diag + 2.0 * cross).sqrt()


def _exclusive_cumsum(x: Tensor) -> Tensor:
    """``out[..., i] = sum_{j<i} x[..., j]`` by shifting, never by subtracting (no cancellation)."""
    return torch.nn.functional.pad(x[..., :-1], (1, 0)).cumsum(-1)


def uniform_jacobian_fro(n: int) -> float:
    """The softmax Jacobian norm of a uniform row over ``n`` keys, ``sqrt(n - 1) / n``."""
    return math.sqrt(n - 1) / n if n > 1 else 1.0


def _heads(t: Tensor, heads: int) -> Tensor:
    b, length, width = t.shape
    return t.view(b, length, heads, width // heads).transpose(1, 2)


def queries_keys(
    mha: nn.Module, x: Tensor, rotary: tuple[Tensor, Tensor] | None = None
) -> tuple[Tensor, Tensor | None, Tensor, float | None]:
    """``(q, q_neg, k, scale)`` of a self-attention layer on x (B, L, E), as its forward makes them.

    q, q_neg: (B, H, L, head_dim) (``q_neg`` None unless daGPAM; diff2's q has 2H heads, the
    pairs (2i, 2i+1)); k (B, H, L, head_dim) with grouped key heads repeated; ``scale`` the
    layer's ``attn_kwargs`` scale (None: default).
    """
    h = mha.num_heads
    q = _heads(mha.q_proj(x), mha.q_heads)
    k = _heads(mha.k_proj(x), mha.kv_heads)
    q_neg = mha.negative_query(x, q) if mha.attention == "dagpam" else None
    if rotary is not None:
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        q_neg = apply_rotary(q_neg, *rotary) if q_neg is not None else None
    if mha.kv_heads != h:
        k = k.repeat_interleave(h // mha.kv_heads, dim=1)
    return q, q_neg, k, mha.attn_kwargs.get("scale")


def _softmax_map(q: Tensor, k: Tensor, scale: float | None, causal: bool) -> Tensor:
    return softmax_attention(q, k, k, scale=scale, is_causal=causal, return_weights=True)[1]


def _per_row(lam: float | Tensor) -> float | Tensor:
    """A lambda as a float, per head (H,) or per token (B, H, L, 1) -> broadcastable to rows."""
    if isinstance(lam, Tensor) and lam.dim() == 1:
        return lam.view(1, -1, 1)
    if isinstance(lam, Tensor) and lam.dim() == 4:
        return lam.squeeze(-1)
    return lam


def _uniform_ref(length: int, is_causal: bool, like: Tensor) -> Tensor | float:
    """Per-row uniform reference: ``sqrt(n-1)/n`` over the visible keys (NaN for one key)."""
    if not is_causal:
        return uniform_jacobian_fro(length)
    n = torch.arange(1, length + 1, dtype=like.dtype, device=like.device)
    ref = (n - 1).sqrt() / n
    return torch.where(n > 1, ref, torch.full_like(ref, math.nan))


@torch.no_grad()
def jacobian_rel(
    mha: nn.Module,
    x: Tensor,
    rotary: tuple[Tensor, Tensor] | None = None,
    *,
    is_causal: bool = False,
) -> Tensor | None:
    """Per-row logit-Jacobian norm relative to a uniform softmax row, (B, H', L); None if n/a.

    ``x`` (B, L, E) is the layer's attention input (self-attention). With ``is_causal`` row
    ``i`` sees ``i + 1`` keys and is compared with a uniform row over those; row 0 (one key, no
    Jacobian) is NaN.
    """
    variant = mha.attention
    if variant not in JACOBIAN_NOTES:
        return None
    q, q_neg, k, scale = queries_keys(mha, x, rotary)
    ref = _uniform_ref(k.shape[2], is_causal, q)
    if variant in ("softmax", "centered"):
        return softmax_jacobian_fro(_softmax_map(q, k, scale, is_causal)) / ref
    if variant == "dagpam":
        lam_pos, lam_neg = (_per_row(v) for v in mha.lambdas(x))
        j_pos = softmax_jacobian_fro(_softmax_map(q, k, scale, is_causal))
        j_neg = softmax_jacobian_fro(_softmax_map(q_neg, k, scale, is_causal))
        return (lam_pos**2 * j_pos**2 + lam_neg**2 * j_neg**2).sqrt() / ref
    if variant == "diff":
        lam = float(mha.diff_lambda())
        j1 = softmax_jacobian_fro(_softmax_map(q[:, 0::2], k[:, 0::2], scale, is_causal))
        j2 = softmax_jacobian_fro(_softmax_map(q[:, 1::2], k[:, 1::2], scale, is_causal))
        return (j1**2 + lam**2 * j2**2).sqrt() / ref
    if variant == "diff2":
        lam = _per_row(mha.diff2_lambda(x))
        j1 = softmax_jacobian_fro(_softmax_map(q[:, 0::2], k, scale, is_causal))
        j2 = softmax_jacobian_fro(_softmax_map(q[:, 1::2], k, scale, is_causal))
        return (j1**2 + lam**2 * j2**2).sqrt() / ref
    extra = {n: v for n, v in mha.attn_kwargs.items() if n != "scale"}
    if variant == "cog":
        _, w = cog_attention(
            q, k, k, scale=scale, is_causal=is_causal, return_weights=True, **extra
        )
        return softmax_jacobian_fro(w.abs()) / ref
    _, w = sigmoid_attention(
        q, k, k, scale=scale, is_causal=is_causal, return_weights=True, **extra
    )
    return (w * w * (1.0 - w) ** 2).sum(-1).sqrt() / ref


@torch.no_grad()
def logit_std(
    mha: nn.Module, x: Tensor, rotary: tuple[Tensor, Tensor] | None = None
) -> dict[str, float]:
    """Standard deviation of the logits ``Q K^T * scale`` over batch, heads and entries.

    Returns ``{"S": std}``, and ``"S_neg"`` too for daGPAM (its negative query's logits).
    """
    q, q_neg, k, scale = queries_keys(mha, x, rotary)
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    out = {"S": float((q @ k.transpose(-2, -1) * s).std())}
    if q_neg is not None:
        out["S_neg"] = float((q_neg @ k.transpose(-2, -1) * s).std())
    return out


@torch.no_grad()
def region_quantity(mha: nn.Module, gamma: float = 1.0) -> Tensor | None:
    """Lemma 1's ``4 sqrt(2) gamma ||W_QK^h||_1 ||W_VO^h||_{1,inf} / sqrt(d_qk)`` per head, (H,).

    ``W_QK^h = W_Q^h W_K^h^T`` (E x E, the positive query for daGPAM); ``W_VO^h = W_V^h W_O^h``
    includes the head's block of the output projection; biases are ignored. None for layouts
    where the query, key and value projections are not ``num_heads`` blocks of ``head_dim``
    (grouped keys, or a variant with a different head layout).
    """
    h, d, e = mha.num_heads, mha.head_dim, mha.embed_dim
    wq, wk = mha.q_proj.weight.detach(), mha.k_proj.weight.detach()
    wv, wo = mha.v_proj.weight.detach(), mha.out_proj.weight.detach()
    if not (wq.shape[0] == wk.shape[0] == wv.shape[0] == h * d == e):
        return None
    wq_h, wk_h, wv_h = wq.view(h, d, e), wk.view(h, d, e), wv.view(h, d, e)
    w_qk = wq_h.transpose(1, 2) @ wk_h  # (H, E, E)
    w_vo = wv_h.transpose(1, 2) @ wo.view(e, h, d).permute(1, 2, 0)  # (H, E, E)
    return 4.0 * math.sqrt(2.0) * gamma * norm_1(w_qk) * composite_norm(w_vo) / math.sqrt(d)
