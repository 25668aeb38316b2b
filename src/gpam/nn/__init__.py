"""Attention modules built on ``gpam.functional``."""

from __future__ import annotations

from gpam.nn.kv_cache import KVCache
from gpam.nn.multihead import MultiheadAttention, diff_lambda_init
from gpam.nn.params import parameter_report
from gpam.nn.rotary import RotaryEmbedding, apply_rotary

__all__ = [
    "KVCache",
    "MultiheadAttention",
    "RotaryEmbedding",
    "apply_rotary",
    "diff_lambda_init",
    "parameter_report",
]
