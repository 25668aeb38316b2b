"""Rotary position embeddings (Su et al. 2021), rotate-half convention as in GPT-NeoX / Llama."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RotaryEmbedding(nn.Module):
    """Produces ``(cos, sin)`` tables for given positions; pass them as ``rotary=`` to attention."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim < 2 or head_dim % 2:
            raise ValueError(f"head_dim must be an even number >= 2 for rotary, got {head_dim}")
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.head_dim = head_dim

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """positions (L,) or (B, L) -> cos, sin of shape (L, head_dim) or (B, L, head_dim)."""
        freqs = positions.to(self.inv_freq.dtype)[..., None] * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos(), emb.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` (B, H, L, D) by the tables ``cos``/``sin`` of shape (L, D) or (B, L, D)."""
    if cos.shape[-2:] != (x.shape[-2], x.shape[-1]) or cos.shape != sin.shape:
        raise ValueError(
            f"rotary tables must have shape (L, head_dim) = {(x.shape[-2], x.shape[-1])} "
            f"(optionally with a batch dim), got {tuple(cos.shape)} and {tuple(sin.shape)}"
        )
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin
