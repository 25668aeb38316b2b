"""What the models return when asked for more than logits: one named tuple per call.

``TransformerLM.forward`` and ``Seq2SeqTransformer.decode`` return the logits tensor, or, when
``kv_caches`` is given, one of these (fields by name or unpacked: ``logits, caches = ...``).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from gpam.nn import KVCache

#: per decoder layer: (self-attention cache, static cross-attention cache)
DecoderCaches = list[tuple[KVCache, KVCache]]


class LMOutput(NamedTuple):
    """``TransformerLM(ids, kv_caches=...)``: ``logits`` ``(B, T, V)`` and the per-layer
    self-attention ``caches`` (grown by the ``T`` new tokens)."""

    logits: Tensor
    caches: list[KVCache]


class DecoderOutput(NamedTuple):
    """``Seq2SeqTransformer.decode(..., kv_caches=...)``: ``logits`` ``(B, T, V_tgt)`` and the
    per-decoder-layer ``(self, cross)`` cache pairs."""

    logits: Tensor
    caches: DecoderCaches
