"""daGPAM for a decoding step's single query row, weights first: ``(lam_pos A_pos - lam_neg
A_neg) V`` with both maps' scores from one product and one value product, not two SDPA calls.

At one query row the mixed weights W are only (B, H, 1, Lk), smaller than the keys, so forming
them costs no memory that matters and saves the second map's ``A V`` product and SDPA's per-call
overhead. On CPU, from :data:`DECODE_MIN_SCORES` scores up, it measured 0.48-0.94x the time of
the SDPA paths (two calls, or the one-call fold) and at 8192 keys with grouped K/V 0.3x; below,
where SDPA's per-call cost is small, it was mostly slower (docs/benchmarks.md). It has not been
timed on a GPU.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gpam.functional._checks import _compiling
from gpam.functional.lambdas import affine_mix

#: device types where a decoding step (one query row, no autograd) runs weights first
#: (:func:`decode_step`); elsewhere it takes the SDPA paths. Add a device type to opt in.
DECODE_DEVICES: frozenset[str] = frozenset({"cpu"})
#: it applies from this many scores (batch x query heads x keys) up: the measured crossover on
#: CPU lay between 1024 (1.08-1.18x the SDPA paths' time) and 1152 (0.70-0.77x), every size
#: measured from there up was faster (``benchmarks/dagpam_sdpa_calls.py --only decode``)
DECODE_MIN_SCORES: int = 1152
#: dtypes it runs in: in bf16/fp16 the scores would be rounded before the softmax, which SDPA
#: keeps in float32, so those take SDPA
_DTYPES = (torch.float32, torch.float64)


def adjacent_rows(q_pos: Tensor, q_neg: Tensor) -> Tensor | None:
    """``q_pos`` and ``q_neg`` (B, H, 1, D) as one (B, H, 2, D) view when each head's negative
    row lies right after its positive one in the same buffer (the layout of
    ``gpam.MultiheadAttention``'s one-GEMM query), else None (always under ``torch.compile``,
    which cannot trace the pointer test)."""
    if _compiling():
        return None
    d = q_pos.shape[-1]
    base = q_pos._base  # both views of one buffer (a cheaper test than comparing storages)
    if (
        base is None
        or q_neg._base is not base
        or q_pos.stride(-1) != 1
        or q_neg.stride() != q_pos.stride()
        or q_neg.data_ptr() != q_pos.data_ptr() + d * q_pos.element_size()
    ):
        return None
    b, h = q_pos.shape[:2]
    return q_pos.as_strided((b, h, 2, d), (q_pos.stride(0), q_pos.stride(1), d, 1))


def decode_step_applies(
    q_pos: Tensor,
    q_neg: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool,
    dropout_p: float,
    lambdas: tuple[object, ...],
    device_types: frozenset[str] | None = None,
) -> bool:
    """Whether :func:`decode_step` applies: one query row, no causal flag (with one row it would
    leave the first key alone visible: SDPA's top-left rule), no dropout, float32/float64 on a
    device type in ``device_types`` (default :data:`DECODE_DEVICES`), at least
    :data:`DECODE_MIN_SCORES` scores, K/V viewable per head without a copy (:func:`batched`)
    and no autograd (the gradients stay SDPA's)."""
    types = DECODE_DEVICES if device_types is None else device_types
    if causal or dropout_p != 0.0 or q_pos.shape[2] != 1 or q_pos.device.type not in types:
        return False
    if q_pos.shape[0] * q_pos.shape[1] * k.shape[2] < DECODE_MIN_SCORES:
        return False
    if q_pos.dtype not in _DTYPES or not (batched(k) and batched(v)):
        return False
    if torch.is_grad_enabled():
        tensors = (q_pos, q_neg, k, v, *lambdas)
        if any(isinstance(t, Tensor) and t.requires_grad for t in tensors):
            return False
    return True


def decode_step(
    q_pos: Tensor,
    q_neg: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    lam_pos: float | Tensor | None,
    lam_neg: float | Tensor,
    affine: bool,
    scale: float,
) -> Tensor:
    """daGPAM output (B, H, 1, Dv) of one query row: q_pos, q_neg (B, H, 1, D); k (B, Hkv, Lk, D)
    and v (B, Hkv, Lk, Dv), each viewable as (B*Hkv, Lk, .) (:func:`batched`); ``mask``: bool
    (True = keep) or additive, broadcastable to (B, H, 1, Lk), with no fully masked row
    (``sdpa_mask``'s safe form); lambdas as resolved by ``dagpam_attention`` (``lam_pos`` unused
    when ``affine``). K/V are not copied: each K/V head's query heads are rows of one product."""
    b, h, _, d = q_pos.shape
    hkv, lk = k.shape[1], k.shape[2]
    g, bk = h // hkv, b * hkv
    both = adjacent_rows(q_pos, q_neg)
    if both is None:
        both = torch.cat((q_pos, q_neg), dim=2)  # (B, H, 2, D): 2 rows per head, a small copy
    rows = both.reshape(bk, 2 * g, d)  # per K/V head: its query heads' (pos, neg) rows
    keys = k.view(bk, lk, d).transpose(1, 2)
    if mask is None:
        logits = torch.bmm(rows, keys).mul_(scale)
    else:
        logits = torch.baddbmm(_rows_mask(mask, b, hkv, g, rows.dtype), rows, keys, alpha=scale)
    pos, neg = torch.softmax(logits, dim=-1).view(b, hkv, g, 2, lk).unbind(3)
    if affine:
        w = affine_mix(pos, neg, _grouped(lam_neg, hkv, g))
    else:
        w = _grouped(lam_pos, hkv, g) * pos - _grouped(lam_neg, hkv, g) * neg  # type: ignore[operator]
    return torch.bmm(w.view(bk, g, lk), v.view(bk, lk, v.shape[-1])).view(b, h, 1, -1)


def batched(t: Tensor) -> bool:
    """Whether ``t`` (B, Hkv, L, D) views as (B*Hkv, L, D) without a copy (a cache built by
    ``torch.cat`` is; a static cross-attention cache made from one projection may not be)."""
    return t.shape[0] == 1 or t.shape[1] == 1 or t.stride(0) == t.shape[1] * t.stride(1)


def _grouped(lam: float | Tensor | None, hkv: int, g: int) -> float | Tensor | None:
    """A lambda of shape (B or 1, H or 1, 1, 1) as (B or 1, Hkv, G, 1), to broadcast against
    the maps laid out (B, Hkv, G, Lk); floats and 0-dim tensors as they are."""
    if not isinstance(lam, Tensor) or lam.dim() == 0 or lam.shape[1] == 1:
        return lam
    return lam.view(lam.shape[0], hkv, g, 1)


def _rows_mask(mask: Tensor, b: int, hkv: int, g: int, dtype: torch.dtype) -> Tensor:
    """An SDPA mask broadcastable to (B, H, 1, Lk) as an additive one broadcastable to the
    scores (B*Hkv, 2G, Lk) (copied only where batch or heads must be spelled out: B*Hkv*Lk
    entries, 2x that for a per-head mask)."""
    m = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))
    if m.dtype == torch.bool:
        m = torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill_(~m, float("-inf"))
    mb, lk = m.shape[0], m.shape[-1]
    if m.shape[1] != 1:  # per head: the same row for a head's positive and negative query
        m = m.view(mb, hkv, g, 1, lk).expand(b, hkv, g, 2, lk)
        return m.reshape(b * hkv, 2 * g, lk)
    if mb == 1:
        return m.view(1, 1, lk)
    return m.expand(b, hkv, 1, lk).reshape(b * hkv, 1, lk)
