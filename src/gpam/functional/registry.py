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
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

# No torch at import time: ``gpam --help`` reads VARIANTS from this file alone (gpam.cli._common).
Op = Callable[..., "Tensor | tuple[Tensor, Tensor]"]


@cache
def _resolve(path: str) -> Any:
    """``"module:name"`` -> the object, imported on first use."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


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


@dataclass(frozen=True)
class Variant:
    """One registry entry: the variant's facts, its functional op and its parameter module.

    Each of ``op_path``, ``params`` and ``example_path`` names a ``"module:attribute"`` that is
    imported on first use (so this file needs no torch and ``functional`` never imports ``nn``).
    ``op`` is the functional op in the call form ``op(q, k, v, **kwargs)``; ``params`` the
    parameter module (a ``gpam.nn.variant.VariantParams`` subclass) or None;
    ``example(q, q_neg, k, v, lam)`` builds the op's arguments ``((q, k, v), kwargs)`` from four
    same-shaped (B, H, L, D) tensors and a lambda (what ``gpam bench`` times and the registry
    tests call), in the variant's own layout (daGPAM's ``q_neg``, diff's sub-head pairs, ...);
    without ``example_path`` it is ``((q, k, v), {})``.
    """

    info: VariantInfo
    op_path: str
    params: str | None = None
    example_path: str | None = None

    @property
    def op(self) -> Op:
        """The functional op, ``op(q, k, v, **kwargs)``."""
        return _resolve(self.op_path)

    @property
    def example(self) -> Callable[..., Any]:
        """The example-argument builder (see the class docstring)."""
        if self.example_path is None:
            return _plain_example
        return _resolve(self.example_path)

    def params_class(self) -> type | None:
        """The parameter module class (``gpam.nn.variant.VariantParams`` subclass) or None."""
        return None if self.params is None else _resolve(self.params)


def _plain_example(q: Tensor, q_neg: Tensor, k: Tensor, v: Tensor, lam: float) -> Any:
    return (q, k, v), {}


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
            "gpam.functional.softmax:softmax_attention"),
    Variant(VariantInfo("dagpam", True, 2, "1 (affine) or lam_pos - lam_neg", True, True, True,
                        "Heo & Choi 2024, arXiv 2410.15578"),
            "gpam.functional.dagpam:registry_op", "gpam.nn.dagpam:DagpamParams",
            "gpam.functional.dagpam:registry_example"),
    Variant(VariantInfo("diff", False, 2, "1 - lam", True, False, True,
                        "Ye et al. 2024, arXiv 2410.05258", _NOT_SHAPED_DIFF),
            "gpam.functional.diff:registry_op", "gpam.nn.diff:DiffParams",
            "gpam.functional.diff:registry_example"),
    Variant(VariantInfo("diff2", False, 2, "1 - lam (lam per token, in (0, 1))", True, False,
                        True, "Differential Transformer V2, microsoft/unilm 2026",
                        _NOT_EXACT_DIFF2),
            "gpam.functional.diff2:diff2_attention", "gpam.nn.diff2:Diff2Params",
            "gpam.functional.diff2:registry_example"),
    Variant(VariantInfo("cog", False, 1, "none (sum of |W| is 1)", False, True, False,
                        "Lv et al. 2024, arXiv 2411.07176"),
            "gpam.functional.cog:cog_attention"),
    Variant(VariantInfo("coda", False, 1, "none", False, True, False, "Tay et al., NeurIPS 2019"),
            "gpam.functional.coda:coda_attention"),
    Variant(VariantInfo("sigmoid", False, 1, "none", False, True, False,
                        "Ramapuram et al. 2024, arXiv 2409.04431"),
            "gpam.functional.sigmoid:sigmoid_attention"),
    Variant(VariantInfo("centered", False, 1, "0", False, True, True,
                        "Nait Saada, Naderi & Tanner, ICML 2025, arXiv 2410.07799"),
            "gpam.functional.centered:centered_attention"),
    Variant(VariantInfo("gated", False, 1, "1 (before the output gate)", True, True, True,
                        "Qiu et al. 2025, arXiv 2505.06708 (Qwen3-Next)", _NOT_EXACT_GATED),
            "gpam.functional.gated:gated_attention", "gpam.nn.gated:GatedParams",
            "gpam.functional.gated:registry_example"),
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
