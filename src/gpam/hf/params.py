"""The gpam state ``gpam.hf.convert`` attaches to one attention layer: the variant's parameter
module (``gpam.nn.variant.VariantParams``, the same class ``gpam.MultiheadAttention`` uses),
built from the pretrained layer, plus the rotary helpers of transformers' convention."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gpam.nn.dagpam import LAMBDA_MODES, NEG_INITS, NEG_QUERIES
from gpam.nn.variant import LayerSpec, VariantParams, params_class, split_attn_kwargs

#: the class of every converted layer's ``gpam`` child (a ``VariantParams``; the name is kept
#: for code written against earlier versions)
GpamAttentionState = VariantParams

__all__ = [
    "LAMBDA_MODES",
    "NEG_INITS",
    "NEG_QUERIES",
    "GpamAttentionState",
    "apply_rope",
    "build_state",
    "unapply_rope",
]


def rotate_half(x: Tensor) -> Tensor:
    """``[x1, x2] -> [-x2, x1]`` over the last dimension (the rotary convention of transformers)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x (B, H, T, D)`` by ``cos, sin (B, T, D)`` (as transformers does)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin


def unapply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Inverse of :func:`apply_rope` (also when cos/sin carry an attention scaling factor)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return (x * cos - rotate_half(x) * sin) / (cos * cos + sin * sin)


def build_state(
    attention: str,
    *,
    num_heads: int,
    head_dim: int,
    query_proj: tuple[Tensor, Tensor | None],
    lam_neg: float = 0.0,
    lambda_mode: str = "head",
    neg_query: str = "linear",
    neg_init: str = "orthogonal",
    layer_idx: int = 0,
    attn_kwargs: dict[str, Any] | None = None,
) -> VariantParams:
    """The variant's parameter module for a pretrained layer (``pretrained=True``), on the query
    projection's device and in its dtype (lambdas float32 or wider).

    ``query_proj = (weight (H*D, E), bias (H*D,) or None)``. daGPAM: ``lam_neg`` per head
    (learnable ``"head"``, fixed buffer ``"fixed"``, or ``"token"``: ``max(x A^T + c, 0)`` with
    A = 0, c = ``lam_neg`` at start, so a converted model starts exact at ``lam_neg=0``); the
    negative query as ``gpam.MultiheadAttention``'s, ``"full"`` starting from the pretrained
    query projection. ``attn_kwargs``: the variant's options and op keyword arguments (as the
    layer's); the op's part is kept as ``state.op_kwargs``.
    """
    weight, bias = query_proj
    options, op_kwargs = split_attn_kwargs(attention, attn_kwargs)
    spec = LayerSpec(
        attention, weight.shape[1], num_heads, head_dim, num_heads, bias is not None, layer_idx,
        weight.device, weight.dtype, lam_neg, None, True, lambda_mode, "clamp", neg_query,
        neg_init, options,
    )  # fmt: skip
    cls = params_class(attention) or VariantParams
    cls.check(spec)
    state = cls(spec, query_proj, pretrained=True)
    state.op_kwargs = op_kwargs
    return state
