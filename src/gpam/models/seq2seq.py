"""Encoder-decoder Transformer for translation, with any gpam attention variant per kind."""

from __future__ import annotations

import math

from torch import Tensor, nn

from gpam.functional import PreparedMask
from gpam.nn import KVCache, parameter_report
from gpam.nn.masks import layer_mask

from . import beam
from .config import Seq2SeqConfig
from .layers import Positions, TransformerLayer, build_attention, cache_length, init_weights
from .lm import _check_ids, _check_mask, _checked_caches
from .outputs import DecoderCaches, DecoderOutput
from .paired import InitScheme, paired_init_


class Seq2SeqTransformer(nn.Module):
    """Transformer encoder-decoder (Vaswani et al.) with pre- or post-LN and tied embeddings.

    Encoder layer ``i`` uses ``config.variant_for(encoder_attention, i, n_encoder_layers)``;
    decoder layer ``i`` uses the same rule for ``decoder_attention`` (causal self-attention)
    and ``cross_attention``. Padding masks are ``(B, L)`` bool, True = padding. ``seed``: as
    in :class:`~gpam.models.TransformerLM` (paired initialisation,
    :func:`gpam.models.paired_init_`).
    """

    tied_keys: tuple[str, ...]

    def __init__(self, config: Seq2SeqConfig, *, seed: int | None = None) -> None:
        super().__init__()
        if not isinstance(config, Seq2SeqConfig):
            raise TypeError(f"config must be a Seq2SeqConfig, got {type(config).__name__}")
        self.config = c = config
        ne, nd = c.n_encoder_layers, c.n_decoder_layers
        self.src_emb = nn.Embedding(c.src_vocab_size, c.d_model)
        self.tgt_emb = nn.Embedding(c.tgt_vocab_size, c.d_model)
        self.src_positions = Positions(c)
        self.tgt_positions = Positions(c)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(
            TransformerLayer(c, build_attention(c, c.variant_for(c.encoder_attention, i, ne), i))
            for i in range(ne)
        )
        self.decoder = nn.ModuleList(
            TransformerLayer(
                c,
                build_attention(c, c.variant_for(c.decoder_attention, i, nd), i),
                build_attention(c, c.variant_for(c.cross_attention, i, nd), i, cross=True),
            )
            for i in range(nd)
        )
        pre = c.norm == "pre"
        self.enc_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if pre else None
        self.dec_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if pre else None
        self.out_proj = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        self.embed_scale = math.sqrt(c.d_model) if c.scale_embeddings else 1.0
        self.init_scheme = InitScheme(
            embed_std=c.d_model**-0.5 if c.scale_embeddings else 0.02, linear="xavier"
        )
        init_weights(self, embed_std=self.init_scheme.embed_std, linear="xavier")
        tied: list[str] = []
        if c.tie_embeddings in ("decoder", "all"):
            self.out_proj.weight = self.tgt_emb.weight
            tied.append("out_proj.weight")
        if c.tie_embeddings == "all":
            self.src_emb.weight = self.tgt_emb.weight
            tied.append("src_emb.weight")
        self.tied_keys = tuple(tied)
        if seed is not None:
            paired_init_(self, seed)

    def layer_variants(self) -> dict[str, list[str]]:
        """The variant of every attention layer, keyed ``"encoder"``, ``"decoder"``, ``"cross"``."""
        c = self.config
        ne, nd = c.n_encoder_layers, c.n_decoder_layers
        return {
            "encoder": [c.variant_for(c.encoder_attention, i, ne) for i in range(ne)],
            "decoder": [c.variant_for(c.decoder_attention, i, nd) for i in range(nd)],
            "cross": [c.variant_for(c.cross_attention, i, nd) for i in range(nd)],
        }

    def encode(self, src_ids: Tensor, src_padding_mask: Tensor | None = None) -> Tensor:
        """Source ids ``(B, S)`` -> memory ``(B, S, d_model)``."""
        _check_ids("src_ids", src_ids, self.config.src_vocab_size)
        if src_padding_mask is not None:
            _check_mask("src_padding_mask", src_padding_mask, src_ids)
        x = self.src_emb(src_ids) * self.embed_scale
        absolute, rotary = self.src_positions(0, src_ids.shape[1], x.device, x.dtype)
        if absolute is not None:
            x = x + absolute
        x = self.drop(x)
        b, n = src_ids.shape
        mask = layer_mask(src_padding_mask, None, False, 0, b, n, n, x.dtype, x.device)
        for layer in self.encoder:
            x = layer(x, self_mask=mask, rotary=rotary)
        return self.enc_norm(x) if self.enc_norm is not None else x

    def new_caches(self) -> DecoderCaches:
        """Empty decoder caches: a growing self-attention and a static cross cache per layer."""
        return [(KVCache(), KVCache(static=True)) for _ in self.decoder]

    def decode(
        self,
        tgt_in_ids: Tensor,
        memory: Tensor | None,
        src_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
        kv_caches: DecoderCaches | None = None,
    ) -> Tensor | DecoderOutput:
        """Decoder input ids ``(B, T)`` + ``memory`` ``(B, S, d)`` -> logits ``(B, T, V_tgt)``.

        With ``kv_caches`` (from :meth:`new_caches`, or an empty list) the ids continue the cached
        target prefix and a :class:`~gpam.models.DecoderOutput` ``(logits, caches)`` is returned
        (always, whenever ``kv_caches`` is given); the cross-attention keys/values are computed
        from ``memory`` on the first call and reused after (``memory`` may then be None).
        """
        _check_ids("tgt_in_ids", tgt_in_ids, self.config.tgt_vocab_size)
        if tgt_padding_mask is not None:
            if kv_caches is not None:
                raise ValueError("tgt_padding_mask is not supported together with kv_caches")
            _check_mask("tgt_padding_mask", tgt_padding_mask, tgt_in_ids)
        kv_caches = _checked_caches(
            kv_caches,
            len(self.decoder),
            self.new_caches,
            "one (self, cross) pair per decoder layer",
        )
        start = cache_length(kv_caches[0][0]) if kv_caches else 0
        x = self.tgt_emb(tgt_in_ids) * self.embed_scale
        absolute, rotary = self.tgt_positions(start, tgt_in_ids.shape[1], x.device, x.dtype)
        if absolute is not None:
            x = x + absolute
        x = self.drop(x)
        self_mask, cross_mask = self._decoder_masks(
            x, start, memory, src_padding_mask, tgt_padding_mask, kv_caches
        )
        for i, layer in enumerate(self.decoder):
            self_cache, cross_cache = kv_caches[i] if kv_caches else (None, None)
            x = layer(
                x,
                self_mask=self_mask,
                rotary=rotary,
                self_cache=self_cache,
                memory=memory,
                cross_mask=cross_mask,
                cross_cache=cross_cache,
            )
        if self.dec_norm is not None:
            x = self.dec_norm(x)
        logits = self.out_proj(x)
        return logits if kv_caches is None else DecoderOutput(logits, kv_caches)

    def _decoder_masks(
        self,
        x: Tensor,
        start: int,
        memory: Tensor | None,
        src_padding_mask: Tensor | None,
        tgt_padding_mask: Tensor | None,
        kv_caches: DecoderCaches | None,
    ) -> tuple[PreparedMask, PreparedMask]:
        """The decoder's causal self-attention mask and its cross-attention mask, once for all
        layers; ``x`` ``(B, T, d)``, ``start`` cached target positions."""
        if memory is not None:
            if not isinstance(memory, Tensor) or memory.dim() != 3:
                raise ValueError("memory must be 3-D (batch, source length, d_model)")
            s_len = memory.shape[1]
        elif kv_caches and kv_caches[0][1].filled:
            s_len = kv_caches[0][1].length
        else:
            raise ValueError("memory is required for a decoder layer without a filled cache")
        b, t = x.shape[0], x.shape[1]
        self_mask = layer_mask(
            tgt_padding_mask, None, True, start, b, t, start + t, x.dtype, x.device
        )
        cross_mask = layer_mask(src_padding_mask, None, False, 0, b, t, s_len, x.dtype, x.device)
        return self_mask, cross_mask

    def forward(
        self,
        src_ids: Tensor,
        tgt_in_ids: Tensor,
        src_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Teacher-forced logits ``(B, T, V_tgt)``: source ``(B, S)``, decoder input ``(B, T)``."""
        memory = self.encode(src_ids, src_padding_mask)
        return self.decode(tgt_in_ids, memory, src_padding_mask, tgt_padding_mask)

    # The decoding functions of gpam.models.beam, as methods: one signature to maintain.
    greedy_decode = beam.greedy_decode
    beam_search = beam.beam_search

    def parameter_report(self) -> dict[str, float | int]:
        """Total parameters, extra over the same model with softmax attention, overhead %."""
        return parameter_report(self)
