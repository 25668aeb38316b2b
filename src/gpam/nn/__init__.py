"""Attention modules built on ``gpam.functional``: the layer, its cache and positions, and one
parameter module per variant that has parameters (``dagpam``, ``diff``, ``diff2``, ...)."""

from __future__ import annotations

from gpam.nn.diff import diff_lambda_init
from gpam.nn.kv_cache import KVCache
from gpam.nn.multihead import AttentionOutput, MultiheadAttention
from gpam.nn.params import parameter_report
from gpam.nn.rotary import RotaryEmbedding, apply_rotary
from gpam.nn.variant import LayerSpec, VariantParams

__all__ = [
    "AttentionOutput",
    "KVCache",
    "LayerSpec",
    "MultiheadAttention",
    "RotaryEmbedding",
    "VariantParams",
    "apply_rotary",
    "diff_lambda_init",
    "parameter_report",
]
