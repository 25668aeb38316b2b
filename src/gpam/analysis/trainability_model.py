"""The character LM of ``gpam analyze trainability``: the attention skip weight ``a`` as an axis.

Block: ``X = a * X + SA(rmsnorm(X))`` then ``X = X + MLP(rmsnorm(X))`` (``a = 1`` is a standard
pre-norm block, ``a = 0`` has no skip around attention). Each SA is a causal
``gpam.MultiheadAttention`` (bias-free) with the library's own initialisation; W_Q, W_K and a
separate negative-query projection are then multiplied by the qk gain (weights only), and
everything trains freely.

Paired initialisation (:func:`build_model`): the embedding, positions, norms, MLPs and head are
drawn first from ``torch.manual_seed(seed)``; each layer's attention is then drawn after its own
``torch.manual_seed`` of ``(seed, layer)``. So every cell with the same seed shares those weights
exactly, whatever the variant, skip weight or gain, and variants whose projections have the same
layout (softmax, centered, cog, daGPAM, ...) also share W_Q, W_K, W_V, W_O (the library draws them
before any variant-specific parameter).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gpam.analysis.phase import scale_gains
from gpam.analysis.stacks import VariantSpec, make_attention


def attention_seed(seed: int, layer: int) -> int:
    """The torch seed of layer ``layer``'s attention for cell seed ``seed``."""
    return 1_000_003 * (seed + 1) + layer


class SkipBlock(nn.Module):
    """``X = a * X + SA(norm1(X))``, ``X = X + MLP(norm2(X))`` on (B, T, E); causal."""

    def __init__(self, width: int, skip_weight: float) -> None:
        super().__init__()
        self.skip_weight = float(skip_weight)
        self.norm1, self.norm2 = nn.RMSNorm(width), nn.RMSNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )
        self.attn: nn.Module = nn.Identity()  # set by build_model

    def forward(self, x: Tensor) -> Tensor:
        x = self.skip_weight * x + self.attn(self.norm1(x), is_causal=True)
        return x + self.mlp(self.norm2(x))


class SkipLM(nn.Module):
    """Token + learned position embeddings, ``depth`` :class:`SkipBlock` s, final RMS norm and a
    linear head. ``forward(ids)`` (B, T) -> logits (B, T, vocab)."""

    def __init__(self, vocab: int, max_len: int, width: int, depth: int, skip_weight: float):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.randn(max_len, width) * 0.02)
        self.blocks = nn.ModuleList(SkipBlock(width, skip_weight) for _ in range(depth))
        self.norm_f = nn.RMSNorm(width)
        self.head = nn.Linear(width, vocab)

    def embed_ids(self, ids: Tensor) -> Tensor:
        """The first hidden state, (B, T, E)."""
        return self.embed(ids) + self.pos[: ids.shape[1]]

    def forward(self, ids: Tensor) -> Tensor:
        x = self.embed_ids(ids)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm_f(x))


def build_model(
    spec: VariantSpec,
    *,
    vocab: int,
    length: int,
    width: int,
    heads: int,
    depth: int,
    skip_weight: float,
    qk_gain: float,
    seed: int,
) -> SkipLM:
    """One cell's model, initialised as the module doc says (float32)."""
    torch.manual_seed(seed)
    model = SkipLM(vocab, length, width, depth, skip_weight)
    for i, blk in enumerate(model.blocks):
        torch.manual_seed(attention_seed(seed, i))
        blk.attn = make_attention(spec, width, heads, layer_idx=i, bias=False)
    if qk_gain != 1.0:
        scale_gains(model, qk_gain, 1.0)
    return model
