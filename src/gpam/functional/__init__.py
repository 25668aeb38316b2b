"""Pure attention math, one function per variant, laid out like ``F.scaled_dot_product_attention``.

Tensors are ``(batch, heads, length, head_dim)``; masks are bool (True = keep) or additive float,
broadcastable to ``(batch, heads, Lq, Lk)``; rows whose keys are all masked give zeros. A mask
used by many calls (every layer of a model) can be made once with ``prepare_mask`` and passed as
``attn_mask=`` (a ``PreparedMask``): the calls then skip its validation and dead-row search.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from gpam.functional._masks import PreparedMask, prepare_mask
from gpam.functional.centered import centered_attention
from gpam.functional.coda import coda_attention
from gpam.functional.cog import cog_attention
from gpam.functional.dagpam import dagpam_attention
from gpam.functional.diff import diff_attention
from gpam.functional.diff2 import diff2_attention
from gpam.functional.registry import (
    HF_CONVERTIBLE,
    QUADRATIC,
    REGISTRY,
    VARIANT_INFO,
    VARIANTS,
    Variant,
    VariantInfo,
    check_variant,
    variant,
    variant_info,
)
from gpam.functional.sigmoid import sigmoid_attention
from gpam.functional.softmax import softmax_attention


def attention(
    name: str, q: Tensor, k: Tensor, v: Tensor, *, q_neg: Tensor | None = None, **kwargs: Any
) -> Tensor | tuple[Tensor, Tensor]:
    """Dispatch to the variant ``name`` (one of ``gpam.VARIANTS``) through the registry.

    Every op is called as ``op(q, k, v, **kwargs)``. ``dagpam`` needs ``q_neg``. ``diff2`` takes
    ``q`` with 2H heads (heads 2i, 2i+1 = positive and negative query of head i) and ``lam``
    (per head and token, see ``diff2_attention``). ``diff`` takes ``q2``/``k2`` or, when they are
    omitted, splits adjacent sub-heads of ``q`` and ``k`` into the pairs (2i, 2i+1) as Ye et al.
    do. Other keyword arguments (masks, ``lam_neg``, ``alpha`` ...) go to the variant's function.
    """
    entry = variant(name)
    if entry.info.negative_query:
        if q_neg is None:
            raise ValueError(f"q_neg is required for attention({name!r}, ...)")
        kwargs["q_neg"] = q_neg
    elif q_neg is not None:
        raise ValueError(f"q_neg is only used by variants with a negative query, not by {name!r}")
    return entry.op(q, k, v, **kwargs)


def __getattr__(name: str) -> Any:
    """``gpam.functional.<variant>_attention`` for every registered variant: the function of
    ``gpam/functional/<variant>.py`` (so a new variant needs no edit here)."""
    base = name.removesuffix("_attention")
    if name.endswith("_attention") and base in REGISTRY:
        import importlib

        return getattr(importlib.import_module(f"gpam.functional.{base}"), name)
    raise AttributeError(f"module 'gpam.functional' has no attribute {name!r}")


__all__ = [
    "HF_CONVERTIBLE",
    "PreparedMask",
    "QUADRATIC",
    "REGISTRY",
    "VARIANTS",
    "VARIANT_INFO",
    "Variant",
    "VariantInfo",
    "attention",
    "centered_attention",
    "check_variant",
    "coda_attention",
    "cog_attention",
    "dagpam_attention",
    "diff2_attention",
    "diff_attention",
    "prepare_mask",
    "sigmoid_attention",
    "softmax_attention",
    "variant",
    "variant_info",
]
