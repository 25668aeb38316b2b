"""gpam: generalized probabilistic attention (GPAM / daGPAM, Heo & Choi 2024) for PyTorch.

``gpam.functional`` holds the attention math, ``gpam.MultiheadAttention`` the layer;
``gpam.models``, ``gpam.analysis``, ``gpam.train`` and ``gpam.hf`` build on them.

The names below load on first use (PEP 562), so ``import gpam`` (and the ``gpam`` command's
``--version`` and ``--help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module that defines it (imported on first access)
_LAZY = {
    "VARIANTS": "gpam.functional",
    "KVCache": "gpam.nn",
    "MultiheadAttention": "gpam.nn",
    "RotaryEmbedding": "gpam.nn",
    "parameter_report": "gpam.nn",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from gpam import functional
    from gpam.functional import VARIANTS
    from gpam.nn import KVCache, MultiheadAttention, RotaryEmbedding, parameter_report


def __getattr__(name: str) -> Any:
    """Load ``gpam.VARIANTS``, ``gpam.MultiheadAttention`` ... and sub-packages on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in ("functional", "nn"):
        value = importlib.import_module(f"gpam.{name}")
    else:
        raise AttributeError(f"module 'gpam' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "VARIANTS",
    "KVCache",
    "MultiheadAttention",
    "RotaryEmbedding",
    "__version__",
    "functional",
    "parameter_report",
]
