"""Lazy access to the optional ``transformers`` dependency (the ``gpam[hf]`` extra)."""

from __future__ import annotations

from types import ModuleType

INSTALL_HINT = "pip install gpam[hf]"


def require_transformers() -> ModuleType:
    """Import and return ``transformers``, or raise an ImportError saying how to install it."""
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - exercised by the missing-extra test
        raise ImportError(
            "gpam.hf needs the Hugging Face `transformers` package, which is not installed; "
            f"install the optional extra with `{INSTALL_HINT}`"
        ) from err
    return transformers
