"""An explicit re-computation of a ``gpam.MultiheadAttention`` forward that keeps the logits.

The library's fast path never materialises the attention logits ``S = Q K^T * scale``; to take
gradients with respect to them we rebuild the layer's forward from its own projections and the
variant formulas of ``docs/reference`` (self-attention, optional causal mask, no dropout), with
every logit matrix a graph tensor. ``tests/test_analysis_explicit.py`` checks that the output
equals the module's own output for every variant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

EXPLICIT_VARIANTS = ("softmax", "dagpam", "diff", "cog", "coda", "sigmoid")


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


def _masked_softmax(s: Tensor, keep: Tensor | None) -> Tensor:
    return (s if keep is None else s.masked_fill(~keep, float("-inf"))).softmax(-1)


def _zero_masked(w: Tensor, keep: Tensor | None) -> Tensor:
    return w if keep is None else w.masked_fill(~keep, 0.0)


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
    q, k, v = _heads(mha.q_proj(x), h), _heads(mha.k_proj(x), h), _heads(mha.v_proj(x), h)
    kwargs = dict(mha.attn_kwargs)
    scale = kwargs.pop("scale", None)
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    keep = None
    if is_causal:
        keep = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
    rec = AttentionRecord()
    variant = mha.attention
    if variant == "dagpam":
        o = _dagpam(mha, x, q, k, v, scale, keep, rec)
    elif variant == "diff":
        o = _diff(mha, q, k, v, scale, keep, rec)
    else:
        s = (q @ k.transpose(-2, -1)) * scale
        rec.logits["S"] = s
        if variant == "softmax":
            w = _masked_softmax(s, keep)
            rec.maps["A"] = w
        elif variant == "cog":
            a = _masked_softmax(s.abs(), keep)
            w = s.sign() * a
            rec.maps["A"] = a
        elif variant == "coda":
            w = _coda(q, k, s, keep, d, kwargs)
            rec.maps["|W|"] = w.abs()
        elif variant == "sigmoid":
            w = _zero_masked((s + _sigmoid_bias(kwargs, keep, length, x)).sigmoid(), keep)
            rec.maps["|W|"] = w
        else:  # pragma: no cover - MultiheadAttention validates the variant
            raise ValueError(f"unknown attention variant {variant!r}")
        rec.weights = w
        o = w @ v
    if retain_grad and torch.is_grad_enabled():
        for t in rec.logits.values():
            if t.requires_grad:
                t.retain_grad()
    out = mha.out_proj(o.transpose(1, 2).reshape(b, length, mha.embed_dim))
    return out, rec


def _dagpam(mha, x, q, k, v, scale, keep, rec: AttentionRecord) -> Tensor:
    q_neg = mha.negative_query(x, q)  # the layer's own negative query, whichever kind
    lam_pos, lam_neg = mha.lambdas()
    lam_pos, lam_neg = _per_head(lam_pos), _per_head(lam_neg)
    kt = k.transpose(-2, -1)
    s_pos, s_neg = (q @ kt) * scale, (q_neg @ kt) * scale
    a_pos, a_neg = _masked_softmax(s_pos, keep), _masked_softmax(s_neg, keep)
    rec.logits.update(S_pos=s_pos, S_neg=s_neg)
    rec.maps.update(A_pos=a_pos, A_neg=a_neg)
    rec.weights = lam_pos * a_pos - lam_neg * a_neg
    return rec.weights @ v


def _diff(mha, q, k, v, scale_full, keep, rec: AttentionRecord) -> Tensor:
    b, _, s_len, d = v.shape
    scale = scale_full  # diff's sub-heads have width head_dim, the same d as here
    v2 = v.view(b, mha.num_heads // 2, 2, s_len, d).permute(0, 1, 3, 2, 4)
    v2 = v2.reshape(b, -1, s_len, 2 * d)
    s1 = (q[:, 0::2] @ k[:, 0::2].transpose(-2, -1)) * scale
    s2 = (q[:, 1::2] @ k[:, 1::2].transpose(-2, -1)) * scale
    a1, a2 = _masked_softmax(s1, keep), _masked_softmax(s2, keep)
    rec.logits.update(S1=s1, S2=s2)
    rec.maps.update(A1=a1, A2=a2)
    rec.weights = a1 - mha.diff_lambda() * a2
    out = mha.subln(rec.weights @ v2) * (1.0 - mha.lam_init)  # (B, H/2, L, 2d)
    out = out.view(b, -1, out.shape[2], 2, d).permute(0, 1, 3, 2, 4)
    return out.reshape(b, -1, out.shape[3], d)


def _coda(q, k, s, keep, d, kwargs) -> Tensor:
    alpha, beta = float(kwargs.get("alpha", 1.0)), float(kwargs.get("beta", 1.0))
    n = -beta * torch.cdist(q, k, p=1.0) / math.sqrt(d)
    if kwargs.get("gate", "sigmoid") == "sigmoid":
        g = 2.0 * torch.sigmoid(n)
    elif keep is None:
        g = torch.sigmoid(n - n.mean(-1, keepdim=True))
    else:
        kk = keep.expand_as(n)
        centre = n.masked_fill(~kk, 0.0).sum(-1, keepdim=True) / kk.sum(-1, keepdim=True)
        g = torch.sigmoid(n - centre)
    return _zero_masked(torch.tanh(alpha * s) * g, keep)


def _sigmoid_bias(kwargs, keep, length: int, x: Tensor) -> Tensor | float:
    if "bias" in kwargs and kwargs["bias"] is not None:
        return float(kwargs["bias"])
    if keep is None:
        return -math.log(length)
    visible = torch.arange(1, length + 1, device=x.device, dtype=x.dtype)
    return -torch.log(visible)[:, None]


def _per_head(lam: float | Tensor) -> float | Tensor:
    if isinstance(lam, Tensor) and lam.dim() == 1:
        return lam.view(1, -1, 1, 1)
    return lam
