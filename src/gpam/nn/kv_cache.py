"""Key/value cache for incremental decoding with ``gpam.MultiheadAttention``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class KVCache:
    """Projected keys and values of one attention layer, shape (B, Hkv, S, head_dim).

    A normal cache grows by the new keys/values at every call (self-attention decoding). A
    ``static`` cache is filled once (cross-attention over the encoder memory) and then reused:
    later calls ignore ``key``/``value``.
    """

    k: Tensor | None = None
    v: Tensor | None = None
    static: bool = False

    @property
    def length(self) -> int:
        """Number of cached positions."""
        return 0 if self.k is None else self.k.shape[2]

    @property
    def filled(self) -> bool:
        """True once the cache holds keys/values."""
        return self.k is not None

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append new keys/values (B, Hkv, L, D) and return all of them."""
        if self.k is None or self.v is None:
            if self.static:  # one copy per session, so every later call reads K/V per head in
                k, v = k.contiguous(), v.contiguous()  # one block (a decoding step's bmm)
            self.k, self.v = k, v
        else:
            if k.shape[0] != self.k.shape[0]:
                raise ValueError(
                    f"kv_cache holds batch size {self.k.shape[0]}, got {k.shape[0]} new entries"
                )
            self.k = torch.cat([self.k, k], dim=2)
            self.v = torch.cat([self.v, v], dim=2)
        return self.k, self.v

    def reorder(self, index: Tensor) -> KVCache:
        """Reorder (or repeat) the batch dimension in place, e.g. after a beam-search step."""
        if self.k is not None and self.v is not None:
            self.k = self.k.index_select(0, index.to(self.k.device))
            self.v = self.v.index_select(0, index.to(self.v.device))
        return self
