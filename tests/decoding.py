"""Token-by-token decoding of one ``gpam.MultiheadAttention`` layer, for tests of the paths a
decoding step takes (``test_functional_decode_step.py``, ``test_functional_fold.py``)."""

from __future__ import annotations

from collections.abc import Callable

import torch

import gpam


def layer_decoder(kv_heads: int | None) -> Callable[[], torch.Tensor]:
    """A float64 daGPAM layer (16 wide, 4 heads, ``kv_heads``) and a function that decodes 5
    tokens with it under no_grad: per token, self-attention over a growing cache (causal), then
    cross-attention over a static cache of a 7-token memory with key padding; returns the
    outputs (B=2, 10, 16) of all calls."""
    torch.manual_seed(0)
    mha = gpam.MultiheadAttention(16, 4, attention="dagpam", kv_heads=kv_heads, lam_neg=0.4)
    mha = mha.double().eval()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    memory = torch.randn(2, 7, 16, dtype=torch.float64)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 4:] = True

    def run() -> torch.Tensor:
        outs, self_cache, cross_cache = [], gpam.KVCache(), gpam.KVCache(static=True)
        with torch.no_grad():
            for t in range(5):
                step = x[:, t : t + 1]
                outs.append(mha(step, kv_cache=self_cache, is_causal=True).output)
                out = mha(step, memory, kv_cache=cross_cache, key_padding_mask=pad).output
                outs.append(out)
        return torch.cat(outs, 1)

    return run
