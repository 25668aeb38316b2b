"""Property tests: random shapes, masks and options for every variant against the reference."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

import gpam.functional as GF
from reference import DEFAULT_KWARGS, REF_VARIANTS, make_inputs, reference

MASK_KINDS = ("none", "bool", "bool_2d", "key_padding", "float_inf", "float_bias")
ADDITIVE = ("softmax", "dagpam", "diff", "diff2", "sigmoid", "centered")


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, object]:
    variant = draw(st.sampled_from(REF_VARIANTS))
    h_kv = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    mask_kind = draw(st.sampled_from(MASK_KINDS))
    if mask_kind == "float_bias" and variant not in ADDITIVE:
        mask_kind = "float_inf"
    return {
        "variant": variant,
        "b": draw(st.integers(1, 3)),
        "h": h_kv * groups,
        "h_kv": h_kv,
        "lq": draw(st.integers(1, 9)),
        "lk": draw(st.integers(1, 9)),
        "d": draw(st.integers(1, 8)),
        "mask_kind": mask_kind,
        "p_keep": draw(st.sampled_from([0.3, 0.7, 1.0])),
        "is_causal": draw(st.booleans()),
        "return_weights": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def make_mask(kind: str, b: int, h: int, lq: int, lk: int, p: float, g: torch.Generator):
    if kind == "none":
        return None
    if kind == "bool_2d":
        return torch.rand(lq, lk, generator=g) < p
    if kind == "key_padding":
        lengths = torch.randint(0, lk + 1, (b,), generator=g)
        return (torch.arange(lk).view(1, lk) < lengths.view(b, 1)).view(b, 1, 1, lk)
    heads = int(torch.randint(0, 2, (1,), generator=g)) * (h - 1) + 1
    keep = torch.rand(b, heads, lq, lk, generator=g) < p
    if kind == "bool":
        return keep
    bias = torch.randn(keep.shape, generator=g, dtype=torch.float64) if kind == "float_bias" else 0
    return torch.where(keep, bias + torch.zeros(keep.shape, dtype=torch.float64), -math.inf)


@settings(max_examples=240, deadline=None)
@given(scenarios())
def test_random_scenarios_match_reference(sc: dict[str, object]) -> None:
    g = torch.Generator().manual_seed(sc["seed"])
    variant = sc["variant"]
    inputs = make_inputs(
        variant, sc["b"], sc["h"], sc["lq"], sc["lk"], sc["d"], h_kv=sc["h_kv"], generator=g
    )
    mask = make_mask(sc["mask_kind"], sc["b"], sc["h"], sc["lq"], sc["lk"], sc["p_keep"], g)
    kw = {**DEFAULT_KWARGS[variant], "attn_mask": mask, "is_causal": sc["is_causal"]}
    want_out, want_w = reference(variant, inputs, **kw)
    fn = getattr(GF, f"{variant}_attention")
    res = fn(*inputs.values(), return_weights=sc["return_weights"], **kw)
    out = res[0] if sc["return_weights"] else res
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, want_out, rtol=1e-9, atol=1e-10)
    if sc["return_weights"]:
        torch.testing.assert_close(res[1], want_w, rtol=1e-9, atol=1e-10)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 8),
    st.integers(1, 8),
    st.floats(0.0, 3.0),
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_dagpam_rows_are_affine(lq: int, lk: int, lam: float, causal: bool, seed: int) -> None:
    """Every row with at least one visible key sums to 1; invisible rows are all zero."""
    g = torch.Generator().manual_seed(seed)
    inputs = make_inputs("dagpam", 2, 2, lq, lk, 4, generator=g)
    keep: Tensor = torch.rand(2, 1, lq, lk, generator=g) < 0.6
    _, w = GF.dagpam_attention(
        *inputs.values(), lam_neg=lam, attn_mask=keep, is_causal=causal, return_weights=True
    )
    visible = keep.expand(2, 2, lq, lk)
    if causal:
        visible = visible & torch.ones(lq, lk, dtype=torch.bool).tril()
    alive = visible.any(-1)
    sums = w.sum(-1)
    torch.testing.assert_close(sums[alive], torch.ones_like(sums[alive]), rtol=0, atol=1e-12)
    assert (w[~alive] == 0).all()
    assert (w[~visible] == 0).all()
    assert w.min() >= -lam - 1e-12
