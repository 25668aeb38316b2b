"""The contract between a layer (``gpam.MultiheadAttention``, the Hugging Face adapter) and a
variant's parameter module: :class:`LayerSpec` in, :class:`VariantParams` out.

A parameter module holds a variant's own parameters (daGPAM's negative query and lambdas, diff's
lambda vectors and sub-layer norm, ...) and their maths before and after the functional op; the
layer keeps the projections, masks, cache, rotary positions and dropout. Which class belongs to
which name is the registry's (``gpam.functional.registry``); nothing else lists variants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from gpam.functional.registry import Op, variant
from gpam.nn.seeded_init import Rule

#: functional keyword arguments the layer itself sets (``attn_kwargs`` may not override them)
LAYER_KWARGS: tuple[str, ...] = ("attn_mask", "is_causal", "dropout_p", "return_weights")


#: a layer's query projection ``(weight (H*D, E), bias or None)``, or None
QueryProj = "tuple[Tensor, Tensor | None] | None"


class Query(NamedTuple):
    """The query side of one call, as a parameter module sees it.

    ``x`` (B, L, E): the query-side layer input (batch first; None where the caller has none);
    ``q`` (B, H', L, D): the query as the op sees it (positions applied); ``raw()``: the query
    before positions; ``rotate(t)``: applies the same positions to a new query ``t``;
    ``paired``: the layer made the module's own query in the same GEMM as its query (see
    :meth:`VariantParams.fused_query`); ``q`` then holds both, positioned, as (B, 2H', L, D)
    with head h's query at head 2h and the module's at 2h + 1, and ``raw()`` gives the query's
    half (B, H', L, D) before positions.
    """

    x: Tensor | None
    q: Tensor
    raw: Callable[[], Tensor]
    rotate: Callable[[Tensor], Tensor]
    paired: bool = False


@dataclass(frozen=True)
class LayerSpec:
    """What a parameter module may read about the layer it belongs to.

    ``attention``: the variant's name. Sizes: ``embed_dim`` E (query-side input width),
    ``num_heads`` H (output heads of the core), ``head_dim`` D, ``kv_heads``; ``bias`` (the
    layer's projections carry biases); ``layer_idx`` (depth, 0-based); ``device`` / ``dtype``
    of new parameters (None: torch's defaults). daGPAM's settings (validated by
    ``gpam.nn.dagpam.check_dagpam_settings``); ``options``: the entries of the layer's
    ``attn_kwargs`` that the module claims (its ``OPTIONS``).
    """

    attention: str
    embed_dim: int
    num_heads: int
    head_dim: int
    kv_heads: int
    bias: bool = True
    layer_idx: int = 0
    device: torch.device | str | None = None
    dtype: torch.dtype | None = None
    lam_neg: float = 0.5
    lam_pos: float | None = None
    affine: bool = True
    lambda_mode: str = "fixed"
    lambda_param: str = "clamp"
    neg_query: str = "linear"
    neg_init: str = "orthogonal"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def factory(self) -> dict[str, Any]:
        """``{"device", "dtype"}`` for new tensors."""
        return {"device": self.device, "dtype": self.dtype}


class VariantParams(nn.Module):
    """Base of every variant's parameter module.

    Subclasses set the class attributes below, build their parameters in ``_build(spec,
    query_proj, pretrained)`` (``query_proj``: the layer's query projection
    ``(weight, bias)``; ``pretrained``: the layer wraps pretrained weights, as ``gpam.hf.convert``
    does, so start as close to them as the variant allows) and override :meth:`attend` and,
    where they add parameters outside this module, :meth:`extra_numel`.
    """

    #: ``attn_kwargs`` keys that are options of this module, not of the functional op
    OPTIONS: ClassVar[tuple[str, ...]] = ()
    #: functional keyword arguments this module computes (``attn_kwargs`` may not set them)
    OWNED_KWARGS: ClassVar[tuple[str, ...]] = ()
    #: query heads per output head the layer's query projection makes (diff2: 2)
    QUERY_SETS_IN_PROJ: ClassVar[int] = 1

    def __init__(
        self, spec: LayerSpec, query_proj: QueryProj = None, pretrained: bool = False
    ) -> None:
        super().__init__()
        self.spec = spec
        self.attention = spec.attention
        self._build(spec, query_proj, pretrained)

    def _build(self, spec: LayerSpec, query_proj: QueryProj, pretrained: bool) -> None:
        """Create the variant's parameters (subclasses; the base has none)."""

    @property
    def num_heads(self) -> int:
        """Output heads H of the core."""
        return self.spec.num_heads

    @property
    def head_dim(self) -> int:
        """Per-head width D."""
        return self.spec.head_dim

    @classmethod
    def check(cls, spec: LayerSpec) -> None:
        """Raise a ValueError (naming the argument) when the layer's sizes do not fit."""

    @property
    def uses_input(self) -> bool:
        """Whether :meth:`attend` reads ``x``, the query-side layer input."""
        return False

    @property
    def uses_positions(self) -> bool:
        """Whether :meth:`attend` makes new queries that need ``q_raw`` / ``rotate``."""
        return False

    @property
    def fuses_query(self) -> bool:
        """Whether :meth:`fused_query` gives a weight (False: it returns None)."""
        return False

    def fused_query(
        self, weight: Tensor, bias: Tensor | None
    ) -> tuple[Tensor, Tensor | None] | None:
        """``(weight, bias)`` of one projection giving the layer's query and this module's own
        query side by side (per head h: the layer's D rows, then the module's D rows), from the
        layer's query projection ``weight (H'*D, E)``, ``bias``; None (the default) when the
        module has no such query.

        The layer then passes both, positioned, as one (B, 2H', L, D) query with
        ``Query.paired`` set to :meth:`attend`.
        """
        return None

    def attend(self, op: Op, query: Query, k: Tensor, v: Tensor, **common: Any) -> Any:
        """The core: ``op(q, k, v, **common)`` plus this variant's maths before and after.

        ``query``: see :class:`Query`; k, v (B, Hkv, S, D) positioned and cached; ``common``:
        masks, dropout, ``return_weights`` and the layer's ``attn_kwargs``. Returns
        (B, H, L, D), and the weights (B, H, L, S) with ``return_weights``.
        """
        return op(query.q, k, v, **common)

    def extra_numel(self) -> int:
        """Parameters beyond the same layer with softmax attention (default: this module's)."""
        return sum(p.numel() for p in self.parameters())

    def init_rules(self) -> dict[str, Rule]:
        """How each of this module's parameters (names relative to it) is initialised at
        construction, as ``gpam.nn.seeded_init`` rules (None: deterministic, kept); read by
        ``gpam.models.paired_init_``. A subclass with parameters must list every one."""
        return {}


def params_class(name: str) -> type[VariantParams] | None:
    """The parameter module class of variant ``name`` (None when it has no parameters)."""
    return variant(name, "attention").params_class()


def split_attn_kwargs(
    name: str, attn_kwargs: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(options, op_kwargs)`` of a layer's ``attn_kwargs`` for variant ``name``.

    ``options`` are the keys the variant's parameter module claims (its ``OPTIONS``); the rest go
    to the functional op. Keys the layer or the module computes (masks, causality, dropout,
    weights; daGPAM's ``q_neg``/lambdas, diff2's ``lam``, ...) raise a ValueError: letting them
    through would silently override the layer (e.g. ``is_causal=False`` in a causal LM).
    """
    if attn_kwargs is None:
        attn_kwargs = {}
    if not isinstance(attn_kwargs, dict):
        raise TypeError(f"attn_kwargs must be a dict or None, got {type(attn_kwargs).__name__}")
    cls = params_class(name)
    owned = LAYER_KWARGS + (cls.OWNED_KWARGS if cls is not None else ())
    bad = sorted(k for k in attn_kwargs if k in owned)
    if bad:
        raise ValueError(
            f"attn_kwargs for attention={name!r} may not set {', '.join(map(repr, bad))}: the "
            "layer sets them (masks and causality through forward's arguments, dropout through "
            "dropout=, weights through need_weights=, lambdas through the layer's settings)"
        )
    claimed = cls.OPTIONS if cls is not None else ()
    options = {k: v for k, v in attn_kwargs.items() if k in claimed}
    return options, {k: v for k, v in attn_kwargs.items() if k not in claimed}


def heads(t: Tensor, num_heads: int) -> Tensor:
    """(B, L, H*D) -> (B, H, L, D)."""
    b, length, width = t.shape
    return t.view(b, length, num_heads, width // num_heads).transpose(1, 2)


def flatten_variant_keys(module: nn.Module, state_dict: dict, prefix: str, _meta: Any) -> None:
    """state_dict post-hook: ``<prefix>variant.X`` -> ``<prefix>X`` (the keys before variant
    modules existed, so every saved checkpoint keeps loading)."""
    inner = prefix + "variant."
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner) :]] = state_dict.pop(key)


def nest_variant_keys(module: nn.Module, state_dict: dict, prefix: str, *_: Any) -> None:
    """load_state_dict pre-hook: the inverse of :func:`flatten_variant_keys`."""
    for name in module.variant.state_dict(keep_vars=True):
        if prefix + name in state_dict:
            state_dict[prefix + "variant." + name] = state_dict.pop(prefix + name)
