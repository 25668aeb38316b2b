"""The one registry of attention variants: names (``gpam.VARIANTS``) and what each one needs.

Every layer that lists variants (models, analysis, compare, bench, the CLI, the Hugging Face
conversion) imports :data:`VARIANTS` or :data:`VARIANT_INFO` from here instead of keeping a copy.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    """

    name: str
    negative_query: bool
    query_sets: int
    row_sum: str
    extra_params: bool
    hf_convertible: bool
    linear_memory: bool
    source: str


_INFOS = (
    VariantInfo("softmax", False, 1, "1", False, True, True, "Vaswani et al. 2017"),
    VariantInfo(
        "dagpam", True, 2, "1 (affine) or lam_pos - lam_neg", True, True, True,
        "Heo & Choi 2024, arXiv 2410.15578",
    ),
    VariantInfo("diff", False, 2, "1 - lam", True, False, True, "Ye et al. 2024, arXiv 2410.05258"),
    VariantInfo(
        "diff2", False, 2, "1 - lam (lam per token, in (0, 1))", True, False, True,
        "Differential Transformer V2, microsoft/unilm 2026",
    ),
    VariantInfo(
        "cog", False, 1, "none (sum of |W| is 1)", False, True, False,
        "Lv et al. 2024, arXiv 2411.07176",
    ),
    VariantInfo("coda", False, 1, "none", False, True, False, "Tay et al., NeurIPS 2019"),
    VariantInfo(
        "sigmoid", False, 1, "none", False, True, False, "Ramapuram et al. 2024, arXiv 2409.04431"
    ),
    VariantInfo(
        "centered", False, 1, "0", False, True, True,
        "Nait Saada, Naderi & Tanner, ICML 2025, arXiv 2410.07799",
    ),
)  # fmt: skip

#: Every variant's facts, by name, in the order of :data:`VARIANTS`.
VARIANT_INFO: dict[str, VariantInfo] = {info.name: info for info in _INFOS}
#: The variant names ``attention=`` accepts everywhere.
VARIANTS: tuple[str, ...] = tuple(VARIANT_INFO)
#: Variants whose pretrained Hugging Face layers ``gpam.hf.convert`` can reuse.
HF_CONVERTIBLE: tuple[str, ...] = tuple(n for n, i in VARIANT_INFO.items() if i.hf_convertible)
#: Variants whose default path is quadratic in memory (an explicit L x L matrix).
QUADRATIC: tuple[str, ...] = tuple(n for n, i in VARIANT_INFO.items() if not i.linear_memory)


def check_variant(name: object, argument: str = "name") -> str:
    """Return ``name`` if it is a known variant, else raise a ValueError listing them."""
    if not isinstance(name, str) or name not in VARIANT_INFO:
        raise ValueError(f"{argument} must be one of {', '.join(VARIANTS)}; got {name!r}")
    return name


def variant_info(name: str) -> VariantInfo:
    """The :class:`VariantInfo` of ``name`` (ValueError for unknown names)."""
    return VARIANT_INFO[check_variant(name)]
