"""The explicit (L x L) forward of a ``gpam.MultiheadAttention`` that keeps its logits.

The library's fast path never materialises the attention logits ``S = Q K^T * scale``; to take
gradients with respect to them we compute them from the layer's own projections as graph tensors
and hand them to the library's functional op of the variant (``return_weights=True``), so no
variant is re-implemented here: the op receives ``S`` as its queries against identity keys with
``scale=1`` (its logits are then exactly ``S``; two logit matrices for daGPAM, diff and diff2).
CoDA's gate uses the queries and keys themselves, so CoDA runs on the real ``q, k`` and ``S``
enters as a zero-valued additive mask ``S - S.detach()`` (the op adds a finite float mask to its
logits), which carries the gradient. Self-attention, optional causal mask, no dropout, no rotary;
``tests/test_analysis_explicit.py`` checks that the output equals the module's own output for
every variant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from gpam.functional import (
    coda_attention,
    dagpam_attention,
    diff2_attention,
    diff_attention,
    softmax_attention,
)
from gpam.functional import variant as registry_entry
from gpam.nn.variant import Query


@dataclass
class AttentionRecord:
    """What one explicit forward exposes (all (B, H, L, L) unless noted).

    ``logits``: name -> logit matrix (``S``; ``S_pos``/``S_neg`` for daGPAM; ``S1``/``S2`` for
    diff, whose H is half the layer's head count). ``maps``: name -> the row-normalised
    probability maps whose entropy is reported. ``weights``: the final W that multiplies V.
    """

    logits: dict[str, Tensor] = field(default_factory=dict)
    maps: dict[str, Tensor] = field(default_factory=dict)
    weights: Tensor | None = None


def _heads(t: Tensor, heads: int) -> Tensor:
    b, length, width = t.shape
    return t.view(b, length, heads, width // heads).transpose(1, 2)


def _logits(q: Tensor, k: Tensor, scale: float) -> Tensor:
    return (q @ k.transpose(-2, -1)) * scale


def _prob_map(s: Tensor, eye: Tensor, causal: bool) -> Tensor:
    """The softmax map of logits ``s`` (through the library op, identity keys, scale 1)."""
    return softmax_attention(s, eye, eye, scale=1.0, is_causal=causal, return_weights=True)[1]


def explicit_attention(
    mha: nn.Module, x: Tensor, *, is_causal: bool = False, retain_grad: bool = True
) -> tuple[Tensor, AttentionRecord]:
    """Self-attention ``mha(x, is_causal=is_causal)`` computed explicitly; x (B, L, E).

    Returns the output (B, L, E) and an :class:`AttentionRecord`. With ``retain_grad`` and a
    graph that requires grad, every logit tensor keeps its ``.grad`` after ``backward()``.
    Supports self-attention with ``kv_heads == num_heads``, no rotary, no padding mask.
    """
    if mha.kv_heads != mha.num_heads:
        raise ValueError("explicit_attention needs kv_heads == num_heads")
    if not mha.batch_first:
        raise ValueError("explicit_attention needs a batch_first layer")
    b, length, _ = x.shape
    h, d = mha.num_heads, mha.head_dim
    variant = mha.attention
    q = _heads(mha.q_proj(x), mha.q_heads)
    k, v = _heads(mha.k_proj(x), h), _heads(mha.v_proj(x), h)
    kwargs = dict(mha.attn_kwargs)
    scale = kwargs.pop("scale", None)
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    eye = torch.eye(length, dtype=x.dtype, device=x.device).expand(b, h, length, length)
    common = {"is_causal": is_causal, "return_weights": True}
    rec = AttentionRecord()
    if variant == "dagpam":
        s_pos, s_neg = _logits(q, k, scale), _logits(mha.negative_query(x, q), k, scale)
        lam_pos, lam_neg = mha.lambdas(x)
        o, rec.weights = dagpam_attention(
            s_pos, s_neg, eye, v, lam_pos=None if mha.affine else lam_pos, lam_neg=lam_neg,
            affine=mha.affine, scale=1.0, **common,
        )  # fmt: skip
        rec.logits.update(S_pos=s_pos, S_neg=s_neg)
        rec.maps.update(
            A_pos=_prob_map(s_pos, eye, is_causal), A_neg=_prob_map(s_neg, eye, is_causal)
        )
    elif variant == "diff":
        o = _diff(mha, q, k, v, scale, eye, common, rec)
    elif variant == "diff2":
        s_pos, s_neg = _logits(q[:, 0::2], k, scale), _logits(q[:, 1::2], k, scale)
        pairs = torch.stack([s_pos, s_neg], dim=2).reshape(b, 2 * h, length, length)
        o, rec.weights = diff2_attention(
            pairs, eye, v, lam=mha.diff2_lambda(x), scale=1.0, **common
        )
        rec.logits.update(S_pos=s_pos, S_neg=s_neg)
        rec.maps.update(
            A_pos=_prob_map(s_pos, eye, is_causal), A_neg=_prob_map(s_neg, eye, is_causal)
        )
    elif variant == "coda":
        s = _logits(q, k, scale)
        o, rec.weights = coda_attention(
            q, k, v, attn_mask=s - s.detach(), scale=scale, **common, **kwargs
        )
        rec.logits["S"] = s
        rec.maps["|W|"] = rec.weights.abs()
    else:  # a map of one logit matrix: softmax, cog, sigmoid, centered, ...
        s = _logits(q, k, scale)
        # through the variant's module, so its maths after the op (e.g. an output gate) count
        query = Query(x, s, lambda: s, lambda t: t)
        o, rec.weights = mha.variant.attend(
            registry_entry(variant).op, query, eye, v, scale=1.0, **common, **kwargs
        )
        rec.logits["S"] = s
        if variant in ("softmax", "cog"):
            rec.maps["A"] = rec.weights.abs()  # cog: |W| = softmax(|S|)
        elif variant == "centered":
            rec.maps["A"] = _prob_map(s, eye, is_causal)
        else:
            rec.maps["|W|"] = rec.weights.abs()
    if retain_grad and torch.is_grad_enabled():
        for t in rec.logits.values():
            if t.requires_grad:
                t.retain_grad()
    out = mha.out_proj(o.transpose(1, 2).reshape(b, length, mha.embed_dim))
    return out, rec


def _diff(mha, q, k, v, scale, eye, common, rec: AttentionRecord) -> Tensor:
    """diff's core through ``diff_attention`` plus the layer's own per-head RMSNorm and
    ``(1 - lam_init)`` factor, with the value heads paired as the layer pairs them."""
    b, _, s_len, d = v.shape
    v2 = v.view(b, mha.num_heads // 2, 2, s_len, d).permute(0, 1, 3, 2, 4)
    v2 = v2.reshape(b, -1, s_len, 2 * d)
    s1, s2 = _logits(q[:, 0::2], k[:, 0::2], scale), _logits(q[:, 1::2], k[:, 1::2], scale)
    half = eye[:, 0::2]
    o, rec.weights = diff_attention(
        s1, s2, half, half, v2, lam=mha.diff_lambda(), scale=1.0, **common
    )
    causal = common["is_causal"]
    rec.logits.update(S1=s1, S2=s2)
    rec.maps.update(A1=_prob_map(s1, half, causal), A2=_prob_map(s2, half, causal))
    out = mha.subln(o) * (1.0 - mha.lam_init)  # (B, H/2, L, 2d)
    out = out.view(b, -1, out.shape[2], 2, d).permute(0, 1, 3, 2, 4)
    return out.reshape(b, -1, out.shape[3], d)
