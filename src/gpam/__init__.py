"""gpam: generalized probabilistic attention (GPAM / daGPAM, Heo & Choi 2024) for PyTorch."""

from __future__ import annotations

__version__ = "0.1.0"
