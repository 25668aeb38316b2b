"""Attention stacks at initialisation for the rank-collapse analyses.

Four architectures (Dong et al. 2021, section 2-3, plus a normalised pure-attention stack):

* ``attention``: pure attention, ``X_{l+1} = SA_l(X_l)`` (no skip, no MLP, no norm);
* ``attention_norm``: ``X_{l+1} = SA_l(rmsnorm(X_l))`` (per-token RMS norm without affine
  weights, no skip, no MLP), so a layer's logit scale is set by its weights alone;
* ``attention_skip``: ``X_{l+1} = X_l + SA_l(X_l)``;
* ``preln``: full pre-LN Transformer blocks, ``H = X + SA(LN(X))``, ``X_{l+1} = H + MLP(LN(H))``.

Each layer is a ``gpam.MultiheadAttention`` with the library's own initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpam._names import ARCHITECTURES
from gpam.functional import VARIANTS


@dataclass(frozen=True)
class VariantSpec:
    """One attention setting: variant name plus daGPAM's lambdas (``None`` for other variants).

    ``neg_query`` and ``neg_init`` go to ``gpam.MultiheadAttention`` for daGPAM
    (``neg_init=None``: the layer's default); they are ignored by the other variants.
    """

    variant: str
    lam_neg: float | None = None
    lam_pos: float | None = None
    affine: bool = True
    neg_query: str = "linear"
    neg_init: str | None = None

    def label(self) -> str:
        """Short human label, e.g. ``dagpam lam_neg=1`` or ``dagpam lam_pos=2,lam_neg=1``.

        A non-default negative query or initialisation is appended, e.g.
        ``dagpam lam_neg=1 negate`` or ``dagpam lam_neg=1 linear/neg_identity``.
        """
        if self.variant != "dagpam":
            return self.variant
        if self.affine:
            text = f"dagpam lam_neg={self.lam_neg:g}"
        else:
            text = f"dagpam lam_pos={self.lam_pos:g},lam_neg={self.lam_neg:g}"
        if self.neg_init not in (None, "orthogonal"):
            return f"{text} {self.neg_query}/{self.neg_init}"
        return text if self.neg_query == "linear" else f"{text} {self.neg_query}"

    def effective_lam_pos(self) -> float | None:
        """``lam_pos`` as used: ``1 + lam_neg`` in the affine form."""
        if self.variant != "dagpam":
            return None
        return 1.0 + float(self.lam_neg) if self.affine else float(self.lam_pos)


def check_spec(spec: VariantSpec) -> None:
    """Raise ValueError for an unknown variant or invalid lambdas."""
    if spec.variant not in VARIANTS:
        raise ValueError(f"variants: unknown variant {spec.variant!r}; expected one of {VARIANTS}")
    if spec.variant == "dagpam":
        from gpam.nn.multihead import NEG_INITS, NEG_QUERIES

        if spec.neg_query not in NEG_QUERIES:
            raise ValueError(f"neg_query must be one of {NEG_QUERIES}, got {spec.neg_query!r}")
        if spec.neg_init is not None and spec.neg_init not in NEG_INITS:
            raise ValueError(f"neg_init must be one of {NEG_INITS}, got {spec.neg_init!r}")
        if spec.lam_neg is None or not spec.lam_neg >= 0:
            raise ValueError(f"lam_neg must be a number >= 0, got {spec.lam_neg!r}")
        if not spec.affine and (spec.lam_pos is None or not spec.lam_pos >= 0):
            raise ValueError(
                f"lam_pos must be a number >= 0 when affine=False, got {spec.lam_pos!r}"
            )


def variant_specs(
    variants: Sequence[str],
    lam_neg: Sequence[float],
    neg_query: Sequence[str] = ("linear",),
    neg_init: Sequence[str | None] = (None,),
) -> list[VariantSpec]:
    """The settings an analysis runs, in order, each checked: one per variant, daGPAM (affine
    form) once per ``lam_neg`` x ``neg_query`` x ``neg_init``."""
    if not variants:
        raise ValueError("variants must name at least one variant")
    out: list[VariantSpec] = []
    for v in variants:
        if v != "dagpam":
            out.append(VariantSpec(v))
            continue
        if not lam_neg or not neg_query or not neg_init:
            raise ValueError(
                "lam_neg, neg_query and neg_init must each list at least one value when dagpam "
                "is run"
            )
        out.extend(
            VariantSpec("dagpam", lam_neg=float(lam), neg_query=nq, neg_init=ni)
            for lam in lam_neg
            for nq in neg_query
            for ni in neg_init
        )
    for s in out:
        check_spec(s)
    return out


def make_attention(
    spec: VariantSpec,
    width: int,
    heads: int,
    *,
    layer_idx: int = 0,
    bias: bool = True,
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """A freshly initialised ``gpam.MultiheadAttention`` for ``spec`` (self-attention)."""
    from gpam.nn import MultiheadAttention

    check_spec(spec)
    kwargs: dict = {"attention": spec.variant, "bias": bias, "layer_idx": layer_idx, "dtype": dtype}
    if spec.variant == "dagpam":
        kwargs["lam_neg"] = float(spec.lam_neg)
        kwargs["neg_query"] = spec.neg_query
        if spec.neg_init is not None:
            kwargs["neg_init"] = spec.neg_init
        if not spec.affine:
            kwargs["affine"] = False
            kwargs["lam_pos"] = float(spec.lam_pos)
    return MultiheadAttention(width, heads, **kwargs)


class Block(nn.Module):
    """One layer of an analysis stack; ``forward`` maps (B, n, d) -> (B, n, d)."""

    def __init__(self, attn: nn.Module, architecture: str, width: int, dtype: torch.dtype):
        super().__init__()
        self.attn = attn
        self.architecture = architecture
        if architecture == "preln":
            self.ln1 = nn.LayerNorm(width, dtype=dtype)
            self.ln2 = nn.LayerNorm(width, dtype=dtype)
            self.mlp = nn.Sequential(
                nn.Linear(width, 4 * width, dtype=dtype),
                nn.GELU(),
                nn.Linear(4 * width, width, dtype=dtype),
            )

    def attention_input(self, x: Tensor) -> Tensor:
        """What this layer's attention reads: ``x``, ``rmsnorm(x)`` or ``LN(x)``; (B, n, d)."""
        if self.architecture == "attention_norm":
            return F.rms_norm(x, (x.shape[-1],))
        if self.architecture == "preln":
            return self.ln1(x)
        return x

    def forward(self, x: Tensor, is_causal: bool = False) -> Tensor:
        if self.architecture == "attention":
            return self.attn(x, is_causal=is_causal)
        if self.architecture == "attention_norm":
            return self.attn(self.attention_input(x), is_causal=is_causal)
        if self.architecture == "attention_skip":
            return x + self.attn(x, is_causal=is_causal)
        h = x + self.attn(self.ln1(x), is_causal=is_causal)
        return h + self.mlp(self.ln2(h))


def build_stack(
    spec: VariantSpec,
    architecture: str,
    depth: int,
    width: int,
    heads: int,
    *,
    dtype: torch.dtype = torch.float64,
) -> nn.ModuleList:
    """``depth`` freshly initialised layers (uses the global torch RNG: seed it first)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"architectures: unknown architecture {architecture!r}; expected one of {ARCHITECTURES}"
        )
    layers = [
        Block(
            make_attention(spec, width, heads, layer_idx=i, dtype=dtype), architecture, width, dtype
        )
        for i in range(depth)
    ]
    return nn.ModuleList(layers)


@torch.no_grad()
def run_stack(layers: nn.ModuleList, x: Tensor) -> list[Tensor]:
    """Hidden states ``[X_0 = x, X_1, ..., X_depth]``, each (B, n, d)."""
    states = [x]
    for layer in layers:
        x = layer(x)
        states.append(x)
    return states
