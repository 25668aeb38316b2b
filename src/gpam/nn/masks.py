"""Turn a layer's key-padding mask, attention mask and causal flag into one functional mask.

:func:`layer_mask` does it once into a ``gpam.functional.PreparedMask``: the models build one per
forward (self-attention, encoder, decoder, cross) and hand it to every layer as ``attn_mask``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gpam.functional._masks import PreparedMask, prepare_mask


def layer_mask(
    key_padding_mask: Tensor | None,
    attn_mask: Tensor | None,
    is_causal: bool,
    past: int,
    batch: int,
    q_len: int,
    k_len: int,
    dtype: torch.dtype,
    device: torch.device,
) -> PreparedMask:
    """:func:`merge_masks` (same arguments), validated and with dead rows found, once: what
    ``gpam.MultiheadAttention.forward`` accepts as ``attn_mask`` for queries (B, q_len) over
    keys (B, k_len) (``past`` of them cached). Causal without padding stays unmaterialised
    (``is_causal=True``, no mask), as does one new query over a cache."""
    mask, causal = merge_masks(
        key_padding_mask, attn_mask, is_causal, past, batch, q_len, k_len, dtype, device
    )
    return prepare_mask(mask, causal, batch, q_len, k_len, dtype=dtype, device=device)


def merge_masks(
    key_padding_mask: Tensor | None,
    attn_mask: Tensor | None,
    is_causal: bool,
    past: int,
    batch: int,
    q_len: int,
    k_len: int,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[Tensor | None, bool]:
    """Combine masks into ``(mask, is_causal)`` for ``gpam.functional`` (bool True = keep).

    ``key_padding_mask`` (B, S): bool True = padding, or additive float. ``attn_mask`` (L, S) or
    4-D, bool True = keep, or additive float. ``past`` cached positions shift causal masking so
    that new query t sees keys ``0 .. past + t`` (end-aligned).
    """
    parts: list[Tensor] = []
    if key_padding_mask is not None:
        _check_mask("key_padding_mask", key_padding_mask)
        if tuple(key_padding_mask.shape) != (batch, k_len):
            raise ValueError(
                f"key_padding_mask must have shape (batch, key length) = {(batch, k_len)}, "
                f"got {tuple(key_padding_mask.shape)}"
            )
        kpm = key_padding_mask.to(device)
        parts.append(~kpm[:, None, None, :] if kpm.dtype == torch.bool else kpm[:, None, None, :])
    if attn_mask is not None:
        _check_mask("attn_mask", attn_mask)
        if attn_mask.dim() not in (2, 4):
            raise ValueError(
                "attn_mask must be 2-D (L, S) or 4-D (B|1, H|1, L, S), "
                f"got shape {tuple(attn_mask.shape)}"
            )
        if tuple(attn_mask.shape[-2:]) != (q_len, k_len):
            raise ValueError(
                f"attn_mask's last two dims must be (L, S) = {(q_len, k_len)}, "
                f"got {tuple(attn_mask.shape)}"
            )
        parts.append(attn_mask.to(device))
    if is_causal and (parts or past > 0):
        if q_len > 1 or not past:
            rows = torch.arange(q_len, device=device)[:, None] + past
            parts.append(torch.arange(k_len, device=device)[None, :] <= rows)
        is_causal = False
    if not parts:
        return None, is_causal
    if all(p.dtype == torch.bool for p in parts):
        mask = parts[0]
        for p in parts[1:]:
            mask = mask & p
        return mask, is_causal
    mask = torch.zeros((), dtype=dtype, device=device)
    for p in parts:
        mask = mask + (p.to(dtype) if p.dtype != torch.bool else _bool_to_float(p, dtype))
    return mask, is_causal


def _bool_to_float(keep: Tensor, dtype: torch.dtype) -> Tensor:
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(
        ~keep, float("-inf")
    )


def _check_mask(name: str, mask: object) -> None:
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"{name} must be bool or floating point, got dtype {mask.dtype}")
