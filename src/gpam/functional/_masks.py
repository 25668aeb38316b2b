"""Masks in the forms the ops need: SDPA's (dead rows made safe), the explicit paths' (keep /
bias / dead), and :class:`PreparedMask`, both made once for many calls (every layer of a model).

Float entries ``<= MASKED_AT_OR_BELOW`` (and ``-inf``) are masked (``gpam.functional._checks``).
No device-to-host sync: dead rows are computed and filled as tensors, whether or not there are any.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from gpam.functional._checks import data_checks_enabled, masked_entries


@dataclass(frozen=True)
class PreparedMask:
    """A mask validated and made ready once, for many attention calls (``prepare_mask``).

    Pass it as ``attn_mask=`` to any ``gpam.functional`` op (with ``is_causal=False``: causality
    is part of it) or to ``gpam.MultiheadAttention.forward``; the op then only checks shapes
    (no tensor work). ``mask``: bool (True = keep) or additive float with ``-inf`` at masked
    entries, causal merged in, broadcastable to (B, H, Lq, Lk); None when there is none, and then
    ``is_causal`` alone says whether the calls are causal (SDPA's own top-left causal path).
    ``safe``: ``mask`` with dead rows unmasked, for SDPA (no NaN), additive float (0 / ``-inf``;
    SDPA would turn a bool mask into it at every call); ``dead``: bool (..., Lq, 1),
    rows with no visible key, whose outputs the ops zero (with ``zero``, a 0-dim tensor made
    once). ``shape``: (B, Lq, Lk) it was made for.
    """

    mask: Tensor | None
    is_causal: bool
    safe: Tensor | None
    dead: Tensor | None
    shape: tuple[int, int, int]
    zero: Tensor | None = None

    def select_heads(self, index: slice) -> PreparedMask:
        """The mask of the heads ``index`` picks (of a per-head 4-D mask; others unchanged)."""
        if self.mask is None or self.mask.dim() < 4 or self.mask.shape[1] == 1:
            return self
        safe, dead = self.safe, self.dead
        return replace(self, mask=self.mask[:, index], safe=safe[:, index], dead=dead[:, index])  # type: ignore[index]


def prepare_mask(
    attn_mask: Tensor | None,
    is_causal: bool,
    batch: int,
    q_len: int,
    k_len: int,
    *,
    dtype: torch.dtype,
    device: torch.device,
) -> PreparedMask:
    """Validate ``attn_mask`` (bool True = keep, or additive float, broadcastable to
    (batch, heads, q_len, k_len)), merge ``is_causal`` into it and find its dead rows, once.

    Without ``attn_mask`` nothing is materialised (``PreparedMask(None, is_causal, ...)``).
    A float mask is cast to ``dtype`` (the queries'; an op casts again if its queries differ).
    """
    shape = (batch, q_len, k_len)
    if attn_mask is None:
        return PreparedMask(None, bool(is_causal), None, None, shape)
    heads = attn_mask.shape[-3] if isinstance(attn_mask, Tensor) and attn_mask.dim() > 2 else 1
    mask = _validated_mask(attn_mask, (batch, heads, q_len, k_len), dtype, device)
    mask = _with_causal(mask, is_causal, q_len, k_len, device)
    safe, dead = _safe(mask)
    zero = torch.zeros((), dtype=dtype, device=device)
    if safe.dtype == torch.bool:  # additive, as SDPA would make it from a bool mask at each call
        safe = torch.where(safe, zero, torch.full((), float("-inf"), dtype=dtype, device=device))
    return PreparedMask(mask, False, safe, dead, shape, zero)


def _for_call(pm: PreparedMask, is_causal: bool, q: Tensor, k: Tensor) -> PreparedMask:
    """``pm`` checked against the call's q (B, H, Lq, D) and k (B, Hkv, Lk, D) (shapes only),
    with its float parts cast to q's dtype where they differ."""
    if is_causal:
        raise ValueError(
            "is_causal must be False with a PreparedMask attn_mask: causality is part of it "
            "(prepare_mask(..., is_causal=True))"
        )
    target = _target(q, k)
    if pm.shape != (target[0], target[2], target[3]):
        raise ValueError(
            f"attn_mask (a PreparedMask for (batch, Lq, Lk) = {pm.shape}) does not fit "
            f"(batch, heads, Lq, Lk) = {target}"
        )
    if pm.mask is None:
        return pm
    if pm.mask.dim() == 4 and pm.mask.shape[1] not in (1, target[1]):
        raise ValueError(
            f"attn_mask (a PreparedMask of shape {tuple(pm.mask.shape)}) is not broadcastable "
            f"to (batch, heads, Lq, Lk) = {target}"
        )
    if pm.mask.device != q.device:
        raise ValueError(f"attn_mask (a PreparedMask) is on {pm.mask.device}, q on {q.device}")
    if pm.safe is not None and pm.safe.dtype != q.dtype:  # e.g. made in float32, run in bf16
        mask = pm.mask.to(q.dtype) if pm.mask.is_floating_point() else pm.mask
        return replace(pm, mask=mask, safe=pm.safe.to(q.dtype))
    return pm


def _target(q: Tensor, k: Tensor) -> tuple[int, int, int, int]:
    return (q.shape[0], q.shape[1], q.shape[2], k.shape[2])


def _validated_mask(
    attn_mask: object, target: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> Tensor:
    if not isinstance(attn_mask, Tensor):
        raise TypeError(f"attn_mask must be a torch.Tensor or None, got {type(attn_mask).__name__}")
    if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
        raise TypeError(
            "attn_mask must be bool (True = keep) or floating point (additive), "
            f"got dtype {attn_mask.dtype}"
        )
    ok = attn_mask.dim() <= 4
    if ok:
        try:
            ok = torch.broadcast_shapes(attn_mask.shape, target) == torch.Size(target)
        except RuntimeError:
            ok = False
    if not ok:
        raise ValueError(
            f"attn_mask of shape {tuple(attn_mask.shape)} is not broadcastable to "
            f"(batch, heads, Lq, Lk) = {tuple(target)}"
        )
    if attn_mask.is_floating_point():
        if data_checks_enabled(attn_mask) and bool(torch.isnan(attn_mask).any()):
            raise ValueError("attn_mask contains NaN")
        # One rule for every variant: entries <= MASKED_AT_OR_BELOW become -inf (compared in the
        # mask's own dtype, before any cast could round them).
        masked = masked_entries(attn_mask)
        attn_mask = attn_mask.to(dtype).masked_fill(masked, float("-inf"))
    return attn_mask.to(device)


def _with_causal(mask: Tensor | None, is_causal: bool, lq: int, lk: int, device) -> Tensor | None:
    if not is_causal:
        return mask
    causal = torch.ones(lq, lk, dtype=torch.bool, device=device).tril()
    if mask is None:
        return causal
    if mask.dtype == torch.bool:
        return mask & causal
    return mask.masked_fill(~causal, float("-inf"))


def _safe(mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(mask with dead rows unmasked, dead (..., Lq, 1))`` of a validated mask."""
    if mask.dtype == torch.bool:
        dead = ~mask.any(-1, keepdim=True)
        return mask | dead, dead
    dead = torch.isneginf(mask).all(-1, keepdim=True)
    return mask.masked_fill(dead, 0.0), dead


def sdpa_mask(
    attn_mask: Tensor | PreparedMask | None, is_causal: bool, q: Tensor, k: Tensor
) -> tuple[Tensor | None, bool, Tensor | None]:
    """Mask for ``F.scaled_dot_product_attention`` with fully-masked rows made safe.

    Returns ``(mask, is_causal, dead)``: ``dead`` is a bool ``(..., Lq, 1)`` marking rows with no
    visible key (the caller zeroes their output with ``masked_fill``), None without ``attn_mask``.
    Float entries ``<= MASKED_AT_OR_BELOW`` come back as ``-inf``. A :class:`PreparedMask` gives
    its prepared parts (no tensor work).
    """
    if isinstance(attn_mask, PreparedMask):
        pm = _for_call(attn_mask, is_causal, q, k)
        return pm.safe, pm.is_causal, pm.dead
    if attn_mask is None:
        return None, bool(is_causal), None
    mask = _validated_mask(attn_mask, _target(q, k), q.dtype, q.device)
    mask = _with_causal(mask, is_causal, q.shape[2], k.shape[2], q.device)
    safe, dead = _safe(mask)  # type: ignore[arg-type]
    return safe, False, dead


def zero_dead(
    out: Tensor, dead: Tensor | None, attn_mask: Tensor | PreparedMask | None = None
) -> Tensor:
    """``out`` (B, H, Lq, Dv) with the rows ``dead`` (..., Lq, 1) marks set to 0 (None: as is);
    ``attn_mask``: the call's, whose prepared 0 is used when it is a :class:`PreparedMask`.

    ``torch.where`` keeps ``out``'s memory layout (SDPA's output is laid out (B, Lq, H, Dv) when
    its query is, so the layer's merge of heads stays a view); ``masked_fill`` would return it
    contiguous in (B, H, Lq, Dv) and cost a copy per layer.
    """
    if dead is None:
        return out
    zero = attn_mask.zero if isinstance(attn_mask, PreparedMask) else None
    return torch.where(dead, 0.0 if zero is None else zero, out)


@dataclass
class ExplicitMask:
    """Mask in the form explicit (L x L) paths need: which entries count, and a finite bias."""

    keep: Tensor | None  # bool, broadcastable to (B, H, Lq, Lk)
    bias: Tensor | None  # finite additive float, masked entries 0
    dead: Tensor | None  # bool (..., Lq, 1): rows with no visible key

    def add_bias(self, scores: Tensor) -> Tensor:
        """``scores + bias`` (finite part of an additive mask)."""
        return scores if self.bias is None else scores + self.bias

    def zero_masked(self, weights: Tensor) -> Tensor:
        """Set weights of masked entries (and of dead rows) to exactly 0."""
        return weights if self.keep is None else weights.masked_fill(~self.keep, 0.0)

    def softmax(self, scores: Tensor) -> Tensor:
        """Masked softmax over keys; dead rows give all-zero weights and no NaN."""
        scores = self.add_bias(scores)
        if self.keep is None:
            return torch.softmax(scores, dim=-1)
        scores = scores.masked_fill(~self.keep, float("-inf"))
        if self.dead is not None:
            scores = scores.masked_fill(self.dead, 0.0)
        weights = torch.softmax(scores, dim=-1)
        return weights if self.dead is None else weights.masked_fill(self.dead, 0.0)


def explicit_mask(
    attn_mask: Tensor | PreparedMask | None, is_causal: bool, q: Tensor, k: Tensor
) -> ExplicitMask:
    """Split ``attn_mask`` / ``is_causal`` into keep / bias / dead parts (see ExplicitMask).

    Float entries ``<= MASKED_AT_OR_BELOW`` (and ``-inf``) are masked, as in :func:`sdpa_mask`.
    No device-to-host sync (``keep`` and ``dead`` are returned whenever there is a mask). A
    :class:`PreparedMask` reuses its validated mask and dead rows.
    """
    dead = None
    if isinstance(attn_mask, PreparedMask):
        pm = _for_call(attn_mask, is_causal, q, k)
        mask, is_causal, dead = pm.mask, pm.is_causal, pm.dead
    elif attn_mask is None:
        mask = None
    else:
        mask = _validated_mask(attn_mask, _target(q, k), q.dtype, q.device)
    mask = _with_causal(mask, is_causal, q.shape[2], k.shape[2], q.device)
    if mask is None:
        return ExplicitMask(None, None, None)
    if mask.dtype == torch.bool:
        keep, bias = mask, None
    else:
        keep = ~torch.isneginf(mask)
        bias = mask.masked_fill(~keep, 0.0)
    return ExplicitMask(keep, bias, ~keep.any(-1, keepdim=True) if dead is None else dead)
