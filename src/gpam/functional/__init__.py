"""Pure attention math, one function per variant, laid out like ``F.scaled_dot_product_attention``.

Tensors are ``(batch, heads, length, head_dim)``; masks are bool (True = keep) or additive float,
broadcastable to ``(batch, heads, Lq, Lk)``; rows whose keys are all masked give zeros.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from gpam.functional.centered import centered_attention
from gpam.functional.coda import coda_attention
from gpam.functional.cog import cog_attention
from gpam.functional.dagpam import dagpam_attention
from gpam.functional.diff import diff_attention
from gpam.functional.diff2 import diff2_attention
from gpam.functional.registry import (
    HF_CONVERTIBLE,
    QUADRATIC,
    VARIANT_INFO,
    VARIANTS,
    VariantInfo,
    check_variant,
    variant_info,
)
from gpam.functional.sigmoid import sigmoid_attention
from gpam.functional.softmax import softmax_attention

#: variants with one query set: ``fn(q, k, v, **kwargs)``
SINGLE_QUERY = {
    "softmax": softmax_attention,
    "cog": cog_attention,
    "coda": coda_attention,
    "sigmoid": sigmoid_attention,
    "centered": centered_attention,
}


def attention(
    name: str,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    q_neg: Tensor | None = None,
    q2: Tensor | None = None,
    k2: Tensor | None = None,
    **kwargs: Any,
) -> Tensor | tuple[Tensor, Tensor]:
    """Dispatch to the variant ``name`` (one of ``gpam.VARIANTS``) with one call signature.

    ``dagpam`` needs ``q_neg``. ``diff2`` takes ``q`` with 2H heads (heads 2i, 2i+1 = positive
    and negative query of head i) and ``lam`` (per head and token, see ``diff2_attention``).
    ``diff`` takes ``q2``/``k2`` or, when they are omitted, splits
    adjacent sub-heads of ``q`` and ``k`` into the pairs (2i, 2i+1) as Ye et al. do. Other keyword
    arguments (masks, ``lam_neg``, ``alpha`` ...) go to the variant's function.
    """
    check_variant(name)
    if name == "dagpam":
        if q_neg is None:
            raise ValueError("q_neg is required for attention('dagpam', ...)")
        return dagpam_attention(q, q_neg, k, v, **kwargs)
    if q_neg is not None:
        raise ValueError(f"q_neg is only used by 'dagpam', not by {name!r}")
    if name == "diff":
        if (q2 is None) != (k2 is None):
            raise ValueError("q2 and k2 must be given together for attention('diff', ...)")
        if q2 is None:
            if q.dim() != 4 or q.shape[1] % 2 or k.dim() != 4 or k.shape[1] % 2:
                raise ValueError(
                    "q and k must be 4-D with an even number of heads (sub-head pairs) for "
                    "attention('diff', ...) without q2/k2"
                )
            q, q2, k, k2 = q[:, 0::2], q[:, 1::2], k[:, 0::2], k[:, 1::2]
        return diff_attention(q, q2, k, k2, v, **kwargs)
    if q2 is not None or k2 is not None:
        raise ValueError(f"q2/k2 are only used by 'diff', not by {name!r}")
    if name == "diff2":
        return diff2_attention(q, k, v, **kwargs)
    return SINGLE_QUERY[name](q, k, v, **kwargs)


__all__ = [
    "HF_CONVERTIBLE",
    "QUADRATIC",
    "SINGLE_QUERY",
    "VARIANTS",
    "VARIANT_INFO",
    "VariantInfo",
    "attention",
    "centered_attention",
    "check_variant",
    "coda_attention",
    "cog_attention",
    "dagpam_attention",
    "diff2_attention",
    "diff_attention",
    "sigmoid_attention",
    "softmax_attention",
    "variant_info",
]
