"""gpam: generalized probabilistic attention (GPAM / daGPAM, Heo & Choi 2024) for PyTorch.

``gpam.functional`` holds the attention math, ``gpam.MultiheadAttention`` the layer;
``gpam.models``, ``gpam.analysis``, ``gpam.train`` and ``gpam.hf`` build on them.
"""

from __future__ import annotations

from gpam import functional
from gpam.functional import VARIANTS
from gpam.nn import KVCache, MultiheadAttention, RotaryEmbedding, parameter_report

__version__ = "0.1.0"

__all__ = [
    "VARIANTS",
    "KVCache",
    "MultiheadAttention",
    "RotaryEmbedding",
    "__version__",
    "functional",
    "parameter_report",
]
