"""daGPAM: dual-attention generalized probabilistic attention (Heo & Choi 2024, arXiv 2410.15578).

``W = lam_pos * softmax(Q_pos K^T s + M) - lam_neg * softmax(Q_neg K^T s + M)``; keys and values
are shared, so ``W V = lam_pos * (A_pos V) - lam_neg * (A_neg V)`` and no L x L matrix is needed.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gpam.functional._checks import (
    as_lambda,
    check_dropout,
    check_qkv,
    check_same,
    check_tensor,
    default_scale,
)
from gpam.functional._decode import adjacent_rows, decode_step, decode_step_applies
from gpam.functional._gqa import SDPA_GQA, mix, sdpa_gqa
from gpam.functional._masks import PreparedMask, explicit_mask, sdpa_mask, zero_dead
from gpam.functional._prep import difference_weights
from gpam.functional.lambdas import affine_mix, check_lambda_shape


def resolve_lambdas(
    lam_pos: float | Tensor | None,
    lam_neg: float | Tensor,
    affine: bool,
    num_heads: int,
    ref: Tensor,
    *,
    need_pos: bool = True,
) -> tuple[float | Tensor | None, float | Tensor]:
    """Validated ``(lam_pos, lam_neg)``; affine: ``lam_pos = 1 + lam_neg`` (rows sum to 1), or
    None with ``need_pos=False`` (the affine mix reads lam_neg alone).

    Each is a float, a tensor of shape (), (H,) or a 4-D tensor broadcastable to (B, H, Lq, 1)
    (per head and per query token, e.g. a token-dependent lambda); ``ref`` is the query.
    """
    target = (ref.shape[0], num_heads, ref.shape[2])
    check_lambda_shape("lam_neg", lam_neg, target)
    lam_neg = as_lambda("lam_neg", lam_neg, num_heads, ref)
    if affine:
        if lam_pos is not None:
            raise ValueError(
                "lam_pos is fixed to 1 + lam_neg when affine=True; pass affine=False to set it"
            )
        return (1.0 + lam_neg if need_pos else None), lam_neg
    if lam_pos is None:
        raise ValueError(
            "lam_pos is required when affine=False (rows then sum to lam_pos - lam_neg)"
        )
    check_lambda_shape("lam_pos", lam_pos, target)
    return as_lambda("lam_pos", lam_pos, num_heads, ref), lam_neg


def dagpam_attention(
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
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """daGPAM attention: an affine (or, with ``affine=False``, free) mix of two softmax maps.

    Shapes: q_pos, q_neg (B, H, Lq, D); k (B, Hkv, Lk, D); v (B, Hkv, Lk, Dv) -> (B, H, Lq, Dv).
    ``lam_neg >= 0``: a float, a tensor of shape (H,) (per head) or a tensor broadcastable to
    (B, H, Lq, 1) (per head and per query token, as ``lambda_mode="token"`` layers pass); other
    shapes raise a ValueError naming the expected one. With ``affine=True`` (default)
    ``lam_pos = 1 + lam_neg`` and every row of W sums to 1 with entries in
    ``[-lam_neg, lam_pos]``; with ``affine=False`` both are free and rows sum to
    ``lam_pos - lam_neg``. ``lam_neg = 0`` is exactly softmax attention.
    The default path is ``F.scaled_dot_product_attention`` (memory linear in L): two calls, one
    call with 2H query heads over the shared K/V heads where ``ONE_CALL_DEVICES`` lists the
    device type. A decoding step's single query row without autograd, in float32/float64 on a
    device type in ``gpam.functional._decode.DECODE_DEVICES`` (CPU), is computed weights first:
    both maps' scores in one product, the mixed (B, H, 1, Lk) weights, one value product. Other
    single rows take one SDPA call over two rows where :func:`folded_query` applies
    (``FOLD_DEVICES``).
    The fused Triton kernel is opt-in only (``GPAM_FUSED=1``; see ``gpam.kernels``): it runs on
    CUDA when it applies (no mask, dropout or weights) and falls back to SDPA with a warning if
    Triton fails; under ``TRITON_INTERPRET=1`` it also takes CPU inputs.
    ``return_weights=True`` computes and returns the explicit W of shape (B, H, Lq, Lk).
    Dropout (``dropout_p``) is applied to each softmax map independently.
    """
    check_qkv(q_pos, k, v, names=("q_pos", "k", "v"))
    check_same("q_neg", q_neg, "q_pos", q_pos)
    check_dropout(dropout_p)
    num_heads = q_pos.shape[1]
    lp, ln = resolve_lambdas(lam_pos, lam_neg, affine, num_heads, q_pos, need_pos=not affine)
    s = default_scale(scale, q_pos.shape[-1])
    if _use_fused(q_pos, k, v, attn_mask, dropout_p, return_weights):
        out = _fused_or_none(q_pos, q_neg, k, v, None if affine else lp, ln, bool(is_causal), s)
        if out is not None:
            return out
    if return_weights:
        m = explicit_mask(attn_mask, is_causal, q_pos, k)
        w = difference_weights(m, q_pos, k, q_neg, k, lp, ln, s, dropout_p, affine=affine)
        return mix(w, v), w
    mask, causal, dead = sdpa_mask(attn_mask, is_causal, q_pos, k)
    if decode_step_applies(q_pos, q_neg, k, v, causal, dropout_p, (lp, ln)):
        out = decode_step(q_pos, q_neg, k, v, mask, lp, ln, affine, s)  # weights first
        return zero_dead(out, dead, attn_mask)
    both = folded_query(q_pos, q_neg, k, mask, causal, dropout_p)
    if both is not None:  # a decoding step: both maps from one call over two query rows
        o_pos, o_neg = sdpa_gqa(both, k, v, mask, False, 0.0, s).split(1, dim=2)
    elif one_call_applies(q_pos, mask):
        o_pos, o_neg = _sdpa_one_call(q_pos, q_neg, k, v, mask, causal, dropout_p, s)
    else:  # grouped K/V heads are not copied (enable_gqa; torch 2.4: expand_kv)
        o_pos = sdpa_gqa(q_pos, k, v, mask, causal, dropout_p, s)
        o_neg = sdpa_gqa(q_neg, k, v, mask, causal, dropout_p, s)
    return _mixed(o_pos, o_neg, lp, ln, affine, dead, attn_mask)


def _mixed(
    o_pos: Tensor,
    o_neg: Tensor,
    lp: float | Tensor | None,
    ln: float | Tensor,
    affine: bool,
    dead: Tensor | None,
    attn_mask: Tensor | PreparedMask | None,
) -> Tensor:
    """The two maps' outputs mixed (affine: ``lerp``; else ``lp o_pos - ln o_neg``), dead rows 0."""
    out = affine_mix(o_pos, o_neg, ln) if affine else lp * o_pos - ln * o_neg  # type: ignore[operator]
    return zero_dead(out, dead, attn_mask)


def dagpam_pairs(
    q_pairs: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    lam_pos: float | Tensor | None = None,
    lam_neg: float | Tensor = 0.5,
    affine: bool = True,
    attn_mask: Tensor | PreparedMask | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """:func:`dagpam_attention` with both queries in one tensor: ``q_pairs`` (B, 2H, Lq, D), whose
    heads 2h and 2h + 1 are head h's positive and negative query (the layout of
    ``gpam.MultiheadAttention``'s one-GEMM query); k, v, the keywords and the result as there.

    Where :func:`pairs_one_call_applies`, both maps come from one SDPA call over the 2H query
    heads (each pair shares its K/V head: ``enable_gqa``, no copy of K, V or the query), so one
    call and its backward replace two and the K/V gradients of two calls are not summed; else the
    pairs are split into views and passed to :func:`dagpam_attention`.
    """
    check_tensor("q_pairs", q_pairs)
    if q_pairs.shape[1] % 2:
        raise ValueError(
            f"q_pairs must hold 2H heads (positive, negative per head), got {q_pairs.shape[1]}"
        )
    if (
        return_weights
        or q_pairs.shape[2] == 1  # a decoding row: dagpam_attention's row paths (see below)
        or not pairs_one_call_applies(q_pairs, k, attn_mask, dropout_p)
    ):
        q_pos, q_neg = _split_pairs(q_pairs)
        return dagpam_attention(
            q_pos, q_neg, k, v, lam_pos=lam_pos, lam_neg=lam_neg, affine=affine,
            attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout_p, scale=scale,
            return_weights=return_weights,
        )  # fmt: skip
    check_qkv(q_pairs, k, v, names=("q_pairs", "k", "v"))
    check_dropout(dropout_p)
    heads = q_pairs.shape[1] // 2
    if heads % k.shape[1]:
        raise ValueError(
            f"q_pairs' heads ({heads}) must be a multiple of k's heads ({k.shape[1]}) "
            "(grouped-query attention)"
        )
    lp, ln = resolve_lambdas(lam_pos, lam_neg, affine, heads, q_pairs, need_pos=not affine)
    s = default_scale(scale, q_pairs.shape[-1])
    mask, causal, dead = sdpa_mask(attn_mask, is_causal, q_pairs, k)  # no head axis (applies)
    o_pos, o_neg = _pairs_sdpa(q_pairs, k, v, mask, causal, s)
    return _mixed(o_pos, o_neg, lp, ln, affine, dead, attn_mask)


def _pairs_sdpa(
    q_pairs: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, scale: float
) -> tuple[Tensor, Tensor]:
    """``(A_pos V, A_neg V)`` from one SDPA call over head pairs (B, 2H, Lq, D): each pair reads
    its K/V head through grouped-query attention; ``mask`` without a per-head axis."""
    out = F.scaled_dot_product_attention(
        q_pairs, k, v, attn_mask=mask, is_causal=causal, scale=scale, enable_gqa=True
    )
    return _split_pairs(out)


def _split_pairs(t: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 2H, L, D) head pairs -> their (B, H, L, D) halves, as views (``view``: C++, where
    ``unflatten`` costs microseconds of Python per call)."""
    b, h2, length, d = t.shape
    return t.view(b, h2 // 2, 2, length, d).unbind(2)  # type: ignore[return-value]


#: device types where :func:`dagpam_pairs` takes one SDPA call over the 2H paired query heads.
#: CPU: as fast as two calls (one/two 0.95-1.02, paired medians, causal L=256..2048 and the bench
#: LM's training step, forward + backward; docs/benchmarks.md), with 3 aten ops less per layer.
#: Not CUDA (not yet measured there: which SDPA backends take ``enable_gqa`` depends on the torch
#: version and dtype, and an fp32 call could fall to the math backend; ``benchmarks/gpu_check.py``
#: times it).
PAIRS_ONE_CALL_DEVICES: frozenset[str] = frozenset({"cpu"})


def pairs_one_call_applies(
    q_pairs: Tensor,
    k: Tensor,
    attn_mask: Tensor | PreparedMask | None,
    dropout_p: float,
    device_types: frozenset[str] | None = None,
) -> bool:
    """Whether :func:`dagpam_pairs` makes one SDPA call: ``enable_gqa`` (torch >= 2.5), a device
    type in ``device_types`` (default :data:`PAIRS_ONE_CALL_DEVICES`), no dropout (its random
    draws stay those of two calls), a mask without a per-head axis, and not the opt-in fused
    Triton kernel (``GPAM_FUSED=1``). A single query row (decoding) goes to
    :func:`dagpam_attention` (the weights-first step, the fold or two calls): there one call
    over the pairs measured no faster through the whole op (1.00-1.09x, docs/benchmarks.md)."""
    types = PAIRS_ONE_CALL_DEVICES if device_types is None else device_types
    if not SDPA_GQA or q_pairs.device.type not in types:
        return False
    if dropout_p != 0.0 or os.environ.get("GPAM_FUSED", "0") == "1":
        return False
    mask = attn_mask.mask if isinstance(attn_mask, PreparedMask) else attn_mask
    return not isinstance(mask, Tensor) or mask.dim() < 4 or mask.shape[1] == 1


#: device types where a decoding step's two maps run as one SDPA call over two query rows
#: (:func:`folded_query`) when the weights-first step (``_decode.DECODE_DEVICES``, faster still)
#: declines, as in bf16 and fp16. CPU: measured faster from :data:`FOLD_MIN_KEY_ROWS` keys up
#: (0.63-0.96x the two calls' time), slower below (up to 1.2x at batch 1; docs/benchmarks.md);
#: not yet timed on a GPU (``benchmarks/gpu_check.py`` times it).
FOLD_DEVICES: frozenset[str] = frozenset({"cpu"})
#: the fold applies when the keys hold at least this many rows (batch x K/V heads x keys): below
#: it SDPA's cost for two query rows exceeds two one-row calls' on CPU (measured crossover
#: between 1024 and 2048 rows, ``benchmarks/dagpam_sdpa_calls.py``)
FOLD_MIN_KEY_ROWS: int = 2048


def folded_query(
    q_pos: Tensor,
    q_neg: Tensor,
    k: Tensor,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    device_types: frozenset[str] | None = None,
) -> Tensor | None:
    """``q_pos`` and ``q_neg`` (B, H, 1, D) as one (B, H, 2, D) view, or None.

    SDPA over it gives both maps in one call (a query row's result does not depend on the other
    rows). Applies to a single query row that already lies next to its negative query in memory
    (a decoding step of ``gpam.MultiheadAttention``'s one-GEMM query: each head's rows
    (positive, negative) are adjacent), without autograd (a view made by ``as_strided`` would
    cost a full-size gradient in the backward), on a device type in ``device_types`` (default
    :data:`FOLD_DEVICES`), with keys ``k`` (B, Hkv, Lk, D) of at least :data:`FOLD_MIN_KEY_ROWS`
    rows, no causal flag and a mask without a query axis (so both rows see the same keys) and no
    dropout (its random draws stay those of two calls). Where the rows would need a copy, or the
    keys are fewer, two calls measured faster (docs/benchmarks.md).
    """
    types = FOLD_DEVICES if device_types is None else device_types
    if causal or dropout_p != 0.0 or q_pos.shape[2] != 1 or q_pos.device.type not in types:
        return None
    if k.shape[0] * k.shape[1] * k.shape[2] < FOLD_MIN_KEY_ROWS:
        return None
    if mask is not None and mask.shape[-2] != 1:
        return None
    if torch.is_grad_enabled() and (q_pos.requires_grad or q_neg.requires_grad):
        return None
    return adjacent_rows(q_pos, q_neg)


#: device types whose default daGPAM path is one SDPA call over 2H query heads; elsewhere two
#: calls. Empty: on CPU two calls measured as fast or faster (one/two = 1.01 at L=1024 and 1.11
#: at L=2048, paired medians; docs/benchmarks.md) and one call needs more memory; on CUDA SDPA's
#: grouped-query support is limited to some backends, so two plain calls keep every backend
#: (not measured on a GPU: benchmarks/gpu_check.py times both). Add a device type to opt in.
ONE_CALL_DEVICES: frozenset[str] = frozenset()


def one_call_applies(
    q: Tensor, mask: Tensor | None, device_types: frozenset[str] | None = None
) -> bool:
    """Whether daGPAM's two maps run as one SDPA call (see :func:`_sdpa_one_call`).

    Needs ``enable_gqa`` (torch >= 2.5), a device type in ``device_types`` (default
    :data:`ONE_CALL_DEVICES`) and a mask without a per-head dimension (else two calls).
    """
    types = ONE_CALL_DEVICES if device_types is None else device_types
    if not SDPA_GQA or q.device.type not in types:
        return False
    return mask is None or mask.dim() < 4 or mask.shape[1] == 1


def _sdpa_one_call(
    q_pos: Tensor,
    q_neg: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
) -> tuple[Tensor, Tensor]:
    """``(A_pos V, A_neg V)``, each (B, H, Lq, Dv), from one SDPA call with 2H query heads.

    SDPA's grouped-query attention maps query head ``j`` to K/V head ``j // (2H / Hkv)``, so the
    query heads are ordered per K/V group: ``[q_pos heads of group g, q_neg heads of group g]``;
    K/V are not copied. ``mask`` must not have a per-head dimension.
    """
    b, h, lq, d = q_pos.shape
    hkv = k.shape[1]
    rep = h // hkv
    both = torch.stack((q_pos.view(b, hkv, rep, lq, d), q_neg.view(b, hkv, rep, lq, d)), dim=2)
    out = F.scaled_dot_product_attention(
        both.view(b, 2 * h, lq, d), k, v, attn_mask=mask, dropout_p=dropout_p,
        is_causal=causal, scale=scale, enable_gqa=True,
    )  # fmt: skip
    out = out.view(b, hkv, 2, rep, lq, v.shape[-1])
    return out[:, :, 0].reshape(b, h, lq, -1), out[:, :, 1].reshape(b, h, lq, -1)


def _use_fused(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, dropout_p: float, weights: bool
) -> bool:
    """Whether to try the opt-in fused Triton kernel (``GPAM_FUSED=1`` and it applies)."""
    if os.environ.get("GPAM_FUSED", "0") != "1" or v.shape[-1] != q.shape[-1]:
        return False
    if attn_mask is not None or dropout_p != 0.0 or weights:
        return False
    from gpam.kernels import fused_dagpam_available
    from gpam.kernels.dagpam_fused import interpreter_applies

    return fused_dagpam_available(q, k) or interpreter_applies(q)


def _fused_or_none(
    q_pos: Tensor,
    q_neg: Tensor,
    k: Tensor,
    v: Tensor,
    lp: float | Tensor | None,
    ln: float | Tensor,
    causal: bool,
    scale: float,
) -> Tensor | None:
    """The fused kernel's output, or None (with a warning) when Triton fails to compile/launch."""
    from gpam.kernels import dagpam_fused
    from gpam.kernels.dagpam_fused import warn_fallback

    try:
        return dagpam_fused(q_pos, q_neg, k, v, lp, ln, causal, scale)
    except Exception as err:  # noqa: BLE001 - any Triton compile/launch error: use SDPA instead
        warn_fallback(err)
        return None


def registry_op(q: Tensor, k: Tensor, v: Tensor, *, q_neg: Tensor | None, **kw: Any) -> Any:
    """``dagpam_attention`` in the registry's call form (the negative query as ``q_neg=``);
    ``q_neg=None``: ``q`` holds both queries as pairs of heads (:func:`dagpam_pairs`)."""
    if q_neg is None:
        return dagpam_pairs(q, k, v, **kw)
    return dagpam_attention(q, q_neg, k, v, **kw)


def registry_example(q: Tensor, q_neg: Tensor, k: Tensor, v: Tensor, lam: float) -> Any:
    return (q, k, v), {"q_neg": q_neg, "lam_neg": lam}
