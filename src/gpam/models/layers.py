"""Building blocks shared by the models: attention factory, MLP, positions, Transformer layer."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from gpam.functional import PreparedMask
from gpam.nn import KVCache, MultiheadAttention, RotaryEmbedding

from .config import _CommonConfig


def build_attention(
    cfg: _CommonConfig, variant: str, layer_idx: int, *, cross: bool = False
) -> MultiheadAttention:
    """A ``gpam.MultiheadAttention`` of ``variant`` with the config's lambda and layer settings.

    Every layer gets the daGPAM settings (``lam_neg``/``lam_pos``/``affine``/``lambda_mode``/
    ``lambda_param``/``neg_query``/``neg_init``; only daGPAM's parameter module reads them);
    ``attn_kwargs[variant]`` goes to layers of that variant only.
    """
    kwargs: dict[str, Any] = {
        "attention": variant,
        "kv_heads": cfg.kv_heads,
        "bias": cfg.bias,
        "dropout": cfg.attention_dropout,
        "layer_idx": layer_idx,
        "lam_neg": float(cfg.lam_neg),
        "lam_pos": None if cfg.lam_pos is None else float(cfg.lam_pos),
        "affine": cfg.affine,
        "lambda_mode": cfg.lambda_mode,
        "lambda_param": cfg.lambda_param,
        "neg_query": cfg.neg_query,
        "neg_init": cfg.neg_init,
    }
    extra = cfg.attn_kwargs.get(variant)
    if extra:
        kwargs["attn_kwargs"] = dict(extra)
    return MultiheadAttention(cfg.d_model, cfg.n_heads, **kwargs)


class MLP(nn.Module):
    """Position-wise feed-forward: Linear(d, d_ff) -> GELU -> Linear(d_ff, d) -> dropout."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, bias: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff, bias=bias)
        self.act = nn.GELU()
        self.proj = nn.Linear(d_ff, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, d) -> (B, T, d)``."""
        return self.drop(self.proj(self.act(self.fc(x))))


def sinusoidal_positions(positions: Tensor, d_model: int, dtype: torch.dtype) -> Tensor:
    """Vaswani et al.'s sinusoidal encoding: int ``positions`` ``(..., T)`` -> ``(..., T, d)``."""
    half = d_model // 2
    i = torch.arange(half, device=positions.device, dtype=torch.float32)
    freq = torch.exp(i * (-2.0 * math.log(10000.0) / d_model))  # 10000^(-2i/d)
    angles = positions.to(torch.float32).unsqueeze(-1) * freq
    pe = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if d_model % 2:
        pe = torch.nn.functional.pad(pe, (0, 1))
    return pe.to(dtype)


class Positions(nn.Module):
    """Position information for one token stream: absolute embeddings or rotary (cos, sin).

    ``forward(start, length, device, dtype, positions=None)`` returns ``(absolute, rotary)``:
    ``absolute`` is a ``(T, d_model)`` (or ``(B, T, d_model)``) tensor to add to the token
    embeddings (None for rotary) and ``rotary`` the ``(cos, sin)`` pair for the attention layers
    (None otherwise). ``positions`` ``(B, T)`` overrides ``start .. start + length - 1`` per row.
    """

    def __init__(self, cfg: _CommonConfig) -> None:
        super().__init__()
        self.kind = cfg.positions
        self.max_len = cfg.max_len
        self.d_model = cfg.d_model
        self.learned = nn.Embedding(cfg.max_len, cfg.d_model) if self.kind == "learned" else None
        self.rotary = None
        if self.kind == "rotary":
            self.rotary = RotaryEmbedding(cfg.d_model // cfg.n_heads, base=cfg.rope_base)

    def forward(
        self,
        start: int,
        length: int,
        device: torch.device,
        dtype: torch.dtype,
        positions: Tensor | None = None,
    ) -> tuple[Tensor | None, tuple[Tensor, Tensor] | None]:
        """Encodings for positions ``start .. start + length - 1`` (or ``positions``)."""
        end = start + length
        if self.kind == "learned" and end > self.max_len:
            raise ValueError(
                f"sequence reaches position {end} but max_len={self.max_len} (learned positions); "
                "use a shorter input or a larger max_len"
            )
        pos = torch.arange(start, end, device=device) if positions is None else positions
        if self.kind == "learned":
            return self.learned(pos).to(dtype), None
        if self.kind == "sinusoidal":
            return sinusoidal_positions(pos, self.d_model, dtype), None
        cos, sin = rotary_cos_sin(self.rotary, pos, dtype)
        return None, (cos, sin)


def positions_from_padding(padding_mask: Tensor, start: int) -> Tensor:
    """Per-row positions ``(B, T)`` of the last ``T = L - start`` tokens of ``padding_mask``
    ``(B, L)`` (True = padding): real tokens count from 0 whatever the padding before them."""
    pos = (~padding_mask).long().cumsum(dim=1) - 1
    return pos.clamp_min(0)[:, start:]


def rotary_cos_sin(rope: nn.Module, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(cos, sin)``, each ``(T, head_dim)`` or ``(B, T, head_dim)``, from ``RotaryEmbedding``."""
    cos, sin = rope(positions)
    return cos.to(dtype), sin.to(dtype)


class TransformerLayer(nn.Module):
    """One Transformer layer: self-attention, optional cross-attention, GELU MLP.

    ``norm="pre"``: ``x + drop(f(LN(x)))``; ``norm="post"``: ``LN(x + drop(f(x)))``.
    """

    def __init__(
        self,
        cfg: _CommonConfig,
        self_attn: MultiheadAttention,
        cross_attn: MultiheadAttention | None = None,
    ) -> None:
        super().__init__()
        self.pre = cfg.norm == "pre"
        d, eps = cfg.d_model, cfg.layer_norm_eps
        self.self_attn = self_attn
        self.norm1 = nn.LayerNorm(d, eps=eps)
        self.cross_attn = cross_attn
        self.norm2 = nn.LayerNorm(d, eps=eps) if cross_attn is not None else None
        self.mlp = MLP(d, cfg.d_ff, cfg.dropout, bias=cfg.bias)
        self.norm3 = nn.LayerNorm(d, eps=eps)
        self.drop = nn.Dropout(cfg.dropout)

    def _residual(self, x: Tensor, norm: nn.LayerNorm, fn: Any) -> tuple[Tensor, Any]:
        y, extra = fn(norm(x) if self.pre else x)
        x = x + self.drop(y)
        return (x if self.pre else norm(x)), extra

    def forward(
        self,
        x: Tensor,
        *,
        self_mask: PreparedMask | None = None,
        rotary: tuple[Tensor, Tensor] | None = None,
        self_cache: KVCache | None = None,
        memory: Tensor | None = None,
        cross_mask: PreparedMask | None = None,
        cross_cache: KVCache | None = None,
    ) -> Tensor:
        """``x`` ``(B, T, d)`` -> ``(B, T, d)``; caches (if given) are updated by the attention.

        ``self_mask`` / ``cross_mask``: the self- and cross-attention masks the model prepared
        once for all its layers (``gpam.nn.masks.layer_mask``: padding, causality, dead rows);
        None: no mask, not causal.
        """

        def self_fn(h: Tensor) -> tuple[Tensor, None]:
            out = self.self_attn(h, attn_mask=self_mask, kv_cache=self_cache, rotary=rotary)
            return (out.output if self_cache is not None else out), None

        x, _ = self._residual(x, self.norm1, self_fn)
        if self.cross_attn is not None:
            if memory is None and (cross_cache is None or not cross_cache.filled):
                raise ValueError("memory is required for a decoder layer without a filled cache")

            def cross_fn(h: Tensor) -> tuple[Tensor, None]:
                out = self.cross_attn(h, memory, memory, attn_mask=cross_mask, kv_cache=cross_cache)
                return (out.output if cross_cache is not None else out), None

            x, _ = self._residual(x, self.norm2, cross_fn)
        x, _ = self._residual(x, self.norm3, lambda h: (self.mlp(h), None))
        return x


def init_weights(module: nn.Module, embed_std: float = 0.02, linear: str = "normal") -> None:
    """Initialise the layers the models own (attention layers keep the core's own init).

    Embeddings: ``N(0, embed_std^2)``. Linear weights: ``N(0, 0.02^2)`` (``"normal"``, GPT-2)
    or Xavier-uniform (``"xavier"``, Vaswani et al. / fairseq); biases zero.
    """
    skip = {
        id(p) for m in module.modules() if isinstance(m, MultiheadAttention) for p in m.parameters()
    }
    for m in module.modules():
        if isinstance(m, nn.Linear) and id(m.weight) not in skip:
            if linear == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=embed_std)


def cache_length(cache: KVCache | None) -> int:
    """Number of positions already held by ``cache`` (0 for None or empty)."""
    return 0 if cache is None else cache.length
