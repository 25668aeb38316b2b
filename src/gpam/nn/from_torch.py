"""Copy a ``torch.nn.MultiheadAttention``'s weights into a ``gpam.MultiheadAttention``."""

from __future__ import annotations

import torch
from torch import nn


def copy_torch_weights(src: nn.MultiheadAttention, dst: nn.Module) -> None:
    """``src``'s in/out projections (packed or separate, with or without bias) into ``dst``'s
    ``q_proj``/``k_proj``/``v_proj``/``out_proj``; then re-tie what depends on ``q_proj``."""
    if dst.q_proj.out_features != src.embed_dim:
        raise ValueError(
            f"from_torch cannot build attention={dst.attention!r}: its query projection makes "
            f"{dst.q_heads} query heads, which a torch.nn.MultiheadAttention does not have"
        )
    with torch.no_grad():
        if src._qkv_same_embed_dim:
            wq, wk, wv = src.in_proj_weight.chunk(3)
        else:
            wq, wk, wv = src.q_proj_weight, src.k_proj_weight, src.v_proj_weight
        qkv = (dst.q_proj, dst.k_proj, dst.v_proj)
        for proj, w in zip(qkv, (wq, wk, wv)):
            proj.weight.copy_(w)
        dst.out_proj.weight.copy_(src.out_proj.weight)
        if src.in_proj_bias is not None:
            for proj, b in zip(qkv, src.in_proj_bias.chunk(3)):
                proj.bias.copy_(b)
            dst.out_proj.bias.copy_(src.out_proj.bias)
    dst.sync_neg_identity()
