"""The one registry of attention variants: ``name -> Variant(info, op, params)``.

``info`` holds the facts the layers above rely on (:class:`VariantInfo`), ``op`` the functional
op in one call form ``op(q, k, v, **kwargs)``, and ``params`` where the variant's parameter
module lives (``"module:Class"`` in ``gpam.nn``, imported on first use so that this layer never
imports ``gpam.nn``; None for variants without parameters). ``gpam.functional.attention``,
``gpam.MultiheadAttention`` and the Hugging Face adapter all dispatch through :data:`REGISTRY`;
every other layer reads :data:`VARIANTS` / :data:`VARIANT_INFO` from here instead of a copy.

Adding a variant: write ``gpam/functional/<name>.py`` (its op), ``gpam/nn/<name>.py`` (its
parameters, if any; see ``gpam.nn.variant.VariantParams``) and one :class:`Variant` below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gpam.functional.centered import centered_attention
from gpam.functional.coda import coda_attention
from gpam.functional.cog import cog_attention
from gpam.functional.dagpam import dagpam_attention
from gpam.functional.diff import diff_attention
from gpam.functional.diff2 import diff2_attention
from gpam.functional.gated import gated_attention
from gpam.functional.sigmoid import sigmoid_attention
from gpam.functional.softmax import softmax_attention

Op = Callable[..., "Tensor | tuple[Tensor, Tensor]"]


@dataclass(frozen=True)
class VariantInfo:
    """Facts about one attention variant that the layers above ``gpam.functional`` rely on.

    Attributes:
        name: the variant name (``attention=`` everywhere).
        negative_query: the functional op takes a separate negative query ``q_neg`` (daGPAM).
        query_sets: query sets per output head (1; 2 for daGPAM, diff and diff2).
        row_sum: what each row of the weight matrix W sums to, in words.
        extra_params: ``gpam.MultiheadAttention`` holds parameters beyond softmax attention's.
        hf_convertible: ``gpam.hf.convert`` can route a pretrained layer through it.
        linear_memory: the default (``return_weights=False``) path needs no L x L matrix.
        source: where the variant comes from.
        hf_note: a sentence (subject: the variant) on why ``gpam.hf.convert`` refuses it (not
            convertible), or why a converted model cannot start exactly equal to the pretrained
            one (convertible; convert warns with it).
    """

    name: str
    negative_query: bool
    query_sets: int
    row_sum: str
    extra_params: bool
    hf_convertible: bool
    linear_memory: bool
    source: str
    hf_note: str = ""


def _plain_example(q: Tensor, q_neg: Tensor, k: Tensor, v: Tensor, lam: float) -> Example:
    return (q, k, v), {}


Example = "tuple[tuple[Tensor, Tensor, Tensor], dict[str, Any]]"


@dataclass(frozen=True)
class Variant:
    """One registry entry: the variant's facts, its functional op and its parameter module.

    ``example(q, q_neg, k, v, lam)``: the op's arguments ``((q, k, v), kwargs)`` built from four
    same-shaped (B, H, L, D) tensors and a lambda (what ``gpam bench`` times and the registry
    tests call), in the variant's own layout (daGPAM's ``q_neg``, diff's sub-head pairs, ...).
    """

    info: VariantInfo
    op: Op
    params: str | None = None
    example: Callable[..., Any] = _plain_example

    def params_class(self) -> type | None:
        """The parameter module class (``gpam.nn.variant.VariantParams`` subclass) or None."""
        if self.params is None:
            return None
        module, _, cls = self.params.partition(":")
        return getattr(importlib.import_module(module), cls)


def _dagpam_op(q: Tensor, k: Tensor, v: Tensor, *, q_neg: Tensor, **kw: Any) -> Any:
    """``dagpam_attention`` in the registry's call form (the negative query as ``q_neg=``)."""
    return dagpam_attention(q, q_neg, k, v, **kw)


def _diff_op(
    q: Tensor, k: Tensor, v: Tensor, *, q2: Tensor | None = None, k2: Tensor | None = None,
    **kw: Any,
) -> Any:  # fmt: skip
    """``diff_attention`` in the registry's call form: ``q2``/``k2``, or, when both are omitted,
    the adjacent sub-heads (2i, 2i+1) of ``q`` and ``k`` as the pairs of head i (Ye et al.)."""
    if (q2 is None) != (k2 is None):
        raise ValueError("q2 and k2 must be given together for attention('diff', ...)")
    if q2 is None:
        if q.dim() != 4 or q.shape[1] % 2 or k.dim() != 4 or k.shape[1] % 2:
            raise ValueError(
                "q and k must be 4-D with an even number of heads (sub-head pairs) for "
                "attention('diff', ...) without q2/k2"
            )
        q, q2, k, k2 = q[:, 0::2], q[:, 1::2], k[:, 0::2], k[:, 1::2]
    return diff_attention(q, q2, k, k2, v, **kw)


def _dagpam_example(q: Tensor, q_neg: Tensor, k: Tensor, v: Tensor, lam: float) -> Example:
    return (q, k, v), {"q_neg": q_neg, "lam_neg": lam}


def _diff_example(q: Tensor, q_neg: Tensor, k: Tensor, v: Tensor, lam: float) -> Example:
    """Ye et al.'s equal-cost layout: H/2 heads of two sub-heads, values of width 2D."""
    b, h, length, d = v.shape
    v2 = v.view(b, h // 2, 2, length, d).transpose(2, 3).reshape(b, h // 2, length, 2 * d)
    return (q, k, v2), {}


def _diff2_example(q: Tensor, q_neg: Tensor, k: Tensor, v: Tensor, lam: float) -> Example:
    """Heads (2h, 2h+1) = (q, q_neg) share one K/V head, one SDPA call."""
    b, h, length, d = q.shape
    return (torch.stack((q, q_neg), dim=2).reshape(b, 2 * h, length, d), k, v), {"lam": lam}


def _gated_example(q: Tensor, q_neg: Tensor, k: Tensor, v: Tensor, lam: float) -> Example:
    """An elementwise gate ``sigmoid(q_neg)`` (the cost of a full-width gate)."""
    return (q, k, v), {"gate": torch.sigmoid(q_neg)}


_NOT_EXACT_GATED = (
    "converts, but cannot start exactly equal to the pretrained model: a sigmoid gate is never "
    "the identity; the gate projection starts at 0, so every gate is 1/2 and each attention "
    "output starts at half the pretrained one (fine-tune afterwards)"
)
_NOT_EXACT_DIFF2 = (
    "cannot convert a pretrained model exactly: Diff V2's output is attn_pos - "
    "sigmoid(lambda_proj(x)) * attn_neg with lambda in (0, 1), so at start it differs from the "
    "pretrained softmax layer (rows sum to 1 - lambda < 1, and the negative query heads are "
    "new); use attention='dagpam' (lam_neg=0, or lambda_mode='token' for a per-token lambda), "
    "which starts exactly equal"
)
_NOT_SHAPED_DIFF = (
    "cannot convert a pretrained model: Differential attention splits each head into "
    "half-width sub-heads, which changes the projection shapes"
)

_ENTRIES = (
    Variant(VariantInfo("softmax", False, 1, "1", False, True, True, "Vaswani et al. 2017"),
            softmax_attention),
    Variant(VariantInfo("dagpam", True, 2, "1 (affine) or lam_pos - lam_neg", True, True, True,
                        "Heo & Choi 2024, arXiv 2410.15578"),
            _dagpam_op, "gpam.nn.dagpam:DagpamParams", _dagpam_example),
    Variant(VariantInfo("diff", False, 2, "1 - lam", True, False, True,
                        "Ye et al. 2024, arXiv 2410.05258", _NOT_SHAPED_DIFF),
            _diff_op, "gpam.nn.diff:DiffParams", _diff_example),
    Variant(VariantInfo("diff2", False, 2, "1 - lam (lam per token, in (0, 1))", True, False,
                        True, "Differential Transformer V2, microsoft/unilm 2026",
                        _NOT_EXACT_DIFF2),
            diff2_attention, "gpam.nn.diff2:Diff2Params", _diff2_example),
    Variant(VariantInfo("cog", False, 1, "none (sum of |W| is 1)", False, True, False,
                        "Lv et al. 2024, arXiv 2411.07176"),
            cog_attention),
    Variant(VariantInfo("coda", False, 1, "none", False, True, False, "Tay et al., NeurIPS 2019"),
            coda_attention),
    Variant(VariantInfo("sigmoid", False, 1, "none", False, True, False,
                        "Ramapuram et al. 2024, arXiv 2409.04431"),
            sigmoid_attention),
    Variant(VariantInfo("centered", False, 1, "0", False, True, True,
                        "Nait Saada, Naderi & Tanner, ICML 2025, arXiv 2410.07799"),
            centered_attention),
    Variant(VariantInfo("gated", False, 1, "1 (before the output gate)", True, True, True,
                        "Qiu et al. 2025, arXiv 2505.06708 (Qwen3-Next)", _NOT_EXACT_GATED),
            gated_attention, "gpam.nn.gated:GatedParams", _gated_example),
)  # fmt: skip

#: Every variant by name, in the order of :data:`VARIANTS`.
REGISTRY: dict[str, Variant] = {v.info.name: v for v in _ENTRIES}
#: Every variant's facts, by name, in the order of :data:`VARIANTS`.
VARIANT_INFO: dict[str, VariantInfo] = {n: v.info for n, v in REGISTRY.items()}
#: The variant names ``attention=`` accepts everywhere.
VARIANTS: tuple[str, ...] = tuple(REGISTRY)
#: Variants whose pretrained Hugging Face layers ``gpam.hf.convert`` can reuse.
HF_CONVERTIBLE: tuple[str, ...] = tuple(n for n, i in VARIANT_INFO.items() if i.hf_convertible)
#: Variants whose default path is quadratic in memory (an explicit L x L matrix).
QUADRATIC: tuple[str, ...] = tuple(n for n, i in VARIANT_INFO.items() if not i.linear_memory)


def check_variant(name: object, argument: str = "name") -> str:
    """Return ``name`` if it is a known variant, else raise a ValueError listing them."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"{argument} must be one of {', '.join(VARIANTS)}; got {name!r}")
    return name


def variant(name: str, argument: str = "name") -> Variant:
    """The registry entry of ``name`` (ValueError for unknown names)."""
    return REGISTRY[check_variant(name, argument)]


def variant_info(name: str) -> VariantInfo:
    """The :class:`VariantInfo` of ``name`` (ValueError for unknown names)."""
    return REGISTRY[check_variant(name)].info
