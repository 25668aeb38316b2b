"""Slow, obviously-correct float64 reference implementations of every attention variant.

Written from ``../shared/reference/variants.md`` and SPEC section 1 only (never from the library
code). Everything is an explicit ``(B, H, Lq, Lk)`` matrix computed in float64 with plain loops
over nothing but broadcasting; speed is irrelevant here. Conventions (docs/ARCHITECTURE.md):

* layout ``(batch, heads, length, head_dim)``; ``k``/``v`` may have fewer heads (grouped-query
  attention): query head ``h`` uses key/value head ``h // (H // H_kv)``;
* ``attn_mask``: bool (True = keep) or additive float, broadcastable to ``(B, H, Lq, Lk)``;
* ``is_causal``: top-left aligned (query ``i`` sees keys ``0..i``), combined with ``attn_mask``;
* rows whose keys are all masked give zero weights and zero output.

Every function returns ``(out, weights)``: ``out`` ``(B, H, Lq, Dv)`` and ``weights``
``(B, H, Lq, Lk)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def expand_kv(x: Tensor, num_heads: int) -> Tensor:
    """Repeat key/value heads ``(B, H_kv, L, D)`` -> ``(B, H, L, D)`` (grouped-query attention)."""
    h_kv = x.shape[1]
    assert num_heads % h_kv == 0
    return x.repeat_interleave(num_heads // h_kv, dim=1)


def mask_parts(
    attn_mask: Tensor | None, is_causal: bool, shape: tuple[int, int, int, int]
) -> tuple[Tensor, Tensor]:
    """Split a mask into (keep ``bool``, additive bias ``float64``), both of full ``shape``.

    Float masks contribute their finite values as a bias; entries equal to ``-inf`` are not kept.
    """
    b, h, lq, lk = shape
    keep = torch.ones(shape, dtype=torch.bool)
    bias = torch.zeros(shape, dtype=torch.float64)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            keep = keep & attn_mask.expand(shape)
        else:
            m = attn_mask.to(torch.float64).expand(shape)
            keep = keep & (m != -math.inf)
            bias = torch.where(keep, m, torch.zeros_like(m))
    if is_causal:
        causal = torch.ones(lq, lk, dtype=torch.bool).tril()
        keep = keep & causal
    return keep, bias


def masked_softmax(scores: Tensor, keep: Tensor) -> Tensor:
    """Row softmax over kept entries only; all-masked rows become exact zeros."""
    neg = torch.full_like(scores, -math.inf)
    s = torch.where(keep, scores, neg)
    row_max = s.amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    e = torch.where(keep, torch.exp(s - row_max), torch.zeros_like(s))
    denom = e.sum(dim=-1, keepdim=True)
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    return e / safe


def _prep(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    h = q.shape[1]
    return q.double(), expand_kv(k.double(), h), expand_kv(v.double(), h)


def _scores(q: Tensor, k: Tensor, scale: float | None) -> Tensor:
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return torch.einsum("bhid,bhjd->bhij", q, k) * s


def _lam(x: float | Tensor, ref: Tensor) -> Tensor:
    """Lambda as float64 broadcastable to ``(B, H, 1, 1)``; a ``(H,)`` tensor is per head."""
    t = torch.as_tensor(x, dtype=torch.float64)
    if t.dim() == 1:
        t = t.view(1, -1, 1, 1)
    return t


def softmax_ref(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """``W = softmax(Q K^T s + mask)``, ``out = W V``."""
    q, k, v = _prep(q, k, v)
    s = _scores(q, k, scale)
    keep, bias = mask_parts(attn_mask, is_causal, tuple(s.shape))
    w = masked_softmax(s + bias, keep)
    return w @ v, w


def dagpam_ref(
    q_pos: Tensor,
    q_neg: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    lam_pos: float | Tensor | None = None,
    lam_neg: float | Tensor = 0.5,
    affine: bool = True,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """``W = lam_pos softmax(Q_pos K^T s) - lam_neg softmax(Q_neg K^T s)``.

    Affine (default): ``lam_pos = 1 + lam_neg``.
    """
    _, a_pos = softmax_ref(q_pos, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)
    _, a_neg = softmax_ref(q_neg, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)
    ln = _lam(lam_neg, a_pos)
    lp = 1.0 + ln if affine else _lam(lam_pos, a_pos)
    w = lp * a_pos - ln * a_neg
    return w @ expand_kv(v.double(), q_pos.shape[1]), w


def diff_ref(
    q1: Tensor,
    q2: Tensor,
    k1: Tensor,
    k2: Tensor,
    v: Tensor,
    *,
    lam: float | Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Differential attention core: ``W = softmax(Q1 K1^T s) - lam softmax(Q2 K2^T s)``, ``W V``.

    ``s = d^-1/2`` with ``d`` the (half) query width; ``v`` may be ``2d`` wide.
    """
    _, a1 = softmax_ref(q1, k1, k1, attn_mask=attn_mask, is_causal=is_causal, scale=scale)
    _, a2 = softmax_ref(q2, k2, k2, attn_mask=attn_mask, is_causal=is_causal, scale=scale)
    w = a1 - _lam(lam, a1) * a2
    return w @ expand_kv(v.double(), q1.shape[1]), w


def cog_ref(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """``W = sign(S) * softmax(|S| + mask)`` (masked entries exactly 0)."""
    q, k, v = _prep(q, k, v)
    s = _scores(q, k, scale)
    keep, bias = mask_parts(attn_mask, is_causal, tuple(s.shape))
    w = torch.sign(s) * masked_softmax(s.abs() + bias, keep)
    return w @ v, w


def coda_ref(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """``M = tanh(alpha (S + bias)) * 2 sigmoid(-beta ||q_i - k_j||_1 / sqrt(d))``; masked: 0.

    A float mask's finite entries are a bias added to S (as for every other variant); the L1
    distance is an explicit ``(B, H, Lq, Lk, d)`` broadcast (slow but plain).
    """
    q, k, v = _prep(q, k, v)
    s = _scores(q, k, scale)
    keep, bias = mask_parts(attn_mask, is_causal, tuple(s.shape))
    s = s + bias
    l1 = (q.unsqueeze(-2) - k.unsqueeze(-3)).abs().sum(-1)
    n = -beta * l1 / math.sqrt(q.shape[-1])
    m = torch.tanh(alpha * s) * 2.0 * torch.sigmoid(n)
    w = torch.where(keep, m, torch.zeros_like(m))
    return w @ v, w


def sigmoid_ref(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    bias: float | None = None,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """``W = sigmoid(S + b + mask)``; default ``b = -log(n)``, n = keys visible to the row."""
    q, k, v = _prep(q, k, v)
    s = _scores(q, k, scale)
    keep, mbias = mask_parts(attn_mask, is_causal, tuple(s.shape))
    if bias is None:
        b = -torch.log(keep.sum(-1, keepdim=True).clamp_min(1).to(s.dtype))
    else:
        b = bias
    m = torch.sigmoid(s + b + mbias)
    w = torch.where(keep, m, torch.zeros_like(m))
    return w @ v, w


def diff2_ref(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    lam: float | Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Differential Transformer V2: ``q`` has 2H heads; head ``2i`` positive, ``2i+1`` negative.

    Both query heads of pair i use key/value head ``i // (H // H_kv)``. ``lam`` is a float or
    a tensor broadcastable to ``(B, H, Lq, 1)`` (per head and token):
    ``W_i = softmax(Q_2i K^T s) - lam_i softmax(Q_2i+1 K^T s)``, rows sum to ``1 - lam_i``.
    """
    q_pos, q_neg = q[:, 0::2], q[:, 1::2]
    _, a_pos = softmax_ref(q_pos, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)
    _, a_neg = softmax_ref(q_neg, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)
    w = a_pos - _lam(lam, a_pos) * a_neg
    return w @ expand_kv(v.double(), q_pos.shape[1]), w


def centered_ref(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """``W = softmax(S + mask) - U``, ``U`` uniform (``1/n_i``) over the keys row i may see.

    Rows sum to 0; a row that sees no key is all zeros.
    """
    q, k, v = _prep(q, k, v)
    s = _scores(q, k, scale)
    keep, bias = mask_parts(attn_mask, is_causal, tuple(s.shape))
    a = masked_softmax(s + bias, keep)
    n = keep.sum(-1, keepdim=True)
    u = torch.where(keep, 1.0 / n.clamp_min(1).to(s.dtype), torch.zeros_like(s))
    w = a - u
    return w @ v, w


def dagpam_token_lambda(
    x: Tensor, weight: Tensor, bias: Tensor, *, lo: float | None = 0.0
) -> Tensor:
    """Per-token lambda ``max(x W^T + b, lo)`` of shape ``(B, H, L, 1)`` from ``x (B, L, E)``.

    ``lo=None`` applies no clamp (used with a sigmoid outside for Diff V2's lambda).
    """
    raw = torch.einsum("ble,he->bhl", x.double(), weight.double()) + bias.double().view(1, -1, 1)
    if lo is not None:
        raw = raw.clamp_min(lo)
    return raw.unsqueeze(-1)


# ---------------------------------------------------------------------------------------------
# Helpers shared by the tests: random inputs per variant and the matching reference call.

REF_VARIANTS = (
    "softmax", "dagpam", "diff", "diff2", "cog", "coda", "sigmoid", "centered", "gated",
)  # fmt: skip


def gated_ref(
    q: Tensor, k: Tensor, v: Tensor, gate: Tensor, **kwargs: object
) -> tuple[Tensor, Tensor]:
    """Gated attention (Qiu et al. 2025): softmax's ``out * gate``; W is softmax's."""
    out, w = softmax_ref(q, k, v, **kwargs)  # type: ignore[arg-type]
    return out * gate.to(out.dtype), w


def make_inputs(
    variant: str,
    b: int,
    h: int,
    lq: int,
    lk: int,
    d: int,
    *,
    h_kv: int | None = None,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
    requires_grad: bool = False,
) -> dict[str, Tensor]:
    """Random tensor arguments for ``variant`` as keyword names of the library function.

    softmax/cog/coda/sigmoid/centered: ``q, k, v``; dagpam: ``q_pos, q_neg, k, v``; diff: ``q1,
    q2, k1, k2, v`` with ``v`` twice as wide as the queries (Ye et al.); diff2: ``q, k, v`` with
    ``q`` holding ``2h`` heads (positive/negative pairs); gated: ``q, k, v, gate``.
    """
    h_kv = h if h_kv is None else h_kv

    def r(*shape: int) -> Tensor:
        t = torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)
        return t.requires_grad_(requires_grad)

    if variant == "dagpam":
        return {
            "q_pos": r(b, h, lq, d),
            "q_neg": r(b, h, lq, d),
            "k": r(b, h_kv, lk, d),
            "v": r(b, h_kv, lk, d),
        }
    if variant == "diff":
        return {
            "q1": r(b, h, lq, d),
            "q2": r(b, h, lq, d),
            "k1": r(b, h_kv, lk, d),
            "k2": r(b, h_kv, lk, d),
            "v": r(b, h_kv, lk, 2 * d),
        }
    if variant == "diff2":
        return {"q": r(b, 2 * h, lq, d), "k": r(b, h_kv, lk, d), "v": r(b, h_kv, lk, d)}
    if variant == "gated":  # an elementwise gate in (0, 1)
        gate = torch.rand(b, h, lq, d, generator=generator, dtype=torch.float64).to(dtype)
        return {"q": r(b, h, lq, d), "k": r(b, h_kv, lk, d), "v": r(b, h_kv, lk, d),
                "gate": gate.requires_grad_(requires_grad)}  # fmt: skip
    return {"q": r(b, h, lq, d), "k": r(b, h_kv, lk, d), "v": r(b, h_kv, lk, d)}


# Variant-specific keyword arguments used by the tests (the same for library and reference).
DEFAULT_KWARGS: dict[str, dict[str, object]] = {
    "softmax": {},
    "dagpam": {"lam_neg": 0.5},
    "diff": {"lam": 0.3},
    "diff2": {"lam": 0.4},
    "cog": {},
    "coda": {},
    "sigmoid": {},
    "centered": {},
    "gated": {},
}

REFERENCES = {
    "softmax": softmax_ref,
    "dagpam": dagpam_ref,
    "diff": diff_ref,
    "diff2": diff2_ref,
    "cog": cog_ref,
    "coda": coda_ref,
    "sigmoid": sigmoid_ref,
    "centered": centered_ref,
    "gated": gated_ref,
}


def reference(variant: str, inputs: dict[str, Tensor], **kwargs: object) -> tuple[Tensor, Tensor]:
    """Run the float64 reference of ``variant`` on ``inputs`` (see :func:`make_inputs`)."""
    return REFERENCES[variant](**inputs, **kwargs)
