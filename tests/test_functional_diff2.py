"""diff2 (Differential Transformer V2) and per-token lambdas, against the float64 reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

import gpam.functional as GF
import gpam.functional.diff2 as diff2_mod
from reference import dagpam_ref, diff2_ref, make_inputs

TOL = {"rtol": 1e-9, "atol": 1e-10}


def token_lam(b: int, h: int, lq: int, seed: int = 0, requires_grad: bool = False) -> Tensor:
    """A per-head, per-token lambda in (0, 1), shape (B, H, Lq, 1)."""
    g = torch.Generator().manual_seed(seed)
    lam = torch.rand(b, h, lq, 1, generator=g, dtype=torch.float64) * 0.9 + 0.05
    return lam.requires_grad_(requires_grad)


def masks(b: int, h: int, lq: int, lk: int) -> dict[str, dict[str, object]]:
    g = torch.Generator().manual_seed(7)
    keep = torch.rand(b, 1, lq, lk, generator=g) < 0.7
    keep[..., 0] = True
    per_head = torch.rand(b, h, lq, lk, generator=g) < 0.7
    pad = torch.ones(b, 1, 1, lk, dtype=torch.bool)
    pad[0, ..., lk // 2 :] = False
    big = torch.zeros(b, 1, lq, lk, dtype=torch.float64).masked_fill(~keep, -1e9)
    bias = torch.randn(b, h, lq, lk, generator=g, dtype=torch.float64)
    return {
        "none": {},
        "causal": {"is_causal": True},
        "bool": {"attn_mask": keep},
        "bool_per_head": {"attn_mask": per_head},
        "padding_causal": {"attn_mask": pad, "is_causal": True},
        "float_inf": {"attn_mask": bias.masked_fill(~keep, -math.inf)},
        "float_minus_1e9": {"attn_mask": big},
        "mask_2d": {"attn_mask": keep[0, 0]},
    }


SHAPES = {
    "self": (2, 3, 3, 6, 6, 4),
    "gqa": (2, 4, 2, 5, 5, 4),
    "mqa_cross": (2, 4, 1, 3, 8, 4),
    "cross_odd": (1, 3, 1, 7, 5, 5),
}


def _masked_like_reference(kw: dict[str, object]) -> dict[str, object]:
    """The reference treats only -inf as masked; -1e9 entries mean 'masked' in the library."""
    m = kw.get("attn_mask")
    if isinstance(m, Tensor) and m.is_floating_point():
        kw = {**kw, "attn_mask": m.masked_fill(m <= -8192, -math.inf)}
    return kw


@pytest.mark.parametrize("mask", list(masks(2, 4, 5, 5)))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_diff2_token_lambda_matches_reference(shape: str, mask: str) -> None:
    b, h, hkv, lq, lk, d = SHAPES[shape]
    kw = masks(b, h, lq, lk)[mask]
    g = torch.Generator().manual_seed(1)
    inputs = make_inputs("diff2", b, h, lq, lk, d, h_kv=hkv, generator=g)
    lam = token_lam(b, h, lq)
    want_out, want_w = diff2_ref(**inputs, lam=lam, **_masked_like_reference(kw))
    out = GF.diff2_attention(*inputs.values(), lam=lam, **kw)
    torch.testing.assert_close(out, want_out, **TOL)
    out_w, w = GF.diff2_attention(*inputs.values(), lam=lam, return_weights=True, **kw)
    torch.testing.assert_close(w, want_w, **TOL)
    torch.testing.assert_close(out_w, want_out, **TOL)
    alive = want_w.abs().sum(-1) > 0
    sums = w.sum(-1)
    want_sums = (1.0 - lam[..., 0]).expand_as(sums)
    torch.testing.assert_close(sums[alive], want_sums[alive], rtol=0, atol=1e-12)


@pytest.mark.parametrize("mask", ["causal", "bool_per_head", "padding_causal", "float_inf"])
def test_diff2_folded_groups_equal_enable_gqa(mask: str, monkeypatch) -> None:
    """The no-``enable_gqa`` fallback (query groups folded into rows) gives the same result."""
    b, h, hkv, lq, lk, d = SHAPES["gqa"]
    kw = masks(b, h, lq, lk)[mask]
    inputs = make_inputs("diff2", b, h, lq, lk, d, h_kv=hkv, generator=torch.Generator())
    lam = token_lam(b, h, lq)
    want = GF.diff2_attention(*inputs.values(), lam=lam, **kw)
    monkeypatch.setattr(diff2_mod, "SDPA_GQA", False)
    calls = []
    fold = diff2_mod.fold_groups
    monkeypatch.setattr(diff2_mod, "fold_groups", lambda *a: calls.append(1) or fold(*a))
    got = GF.diff2_attention(*inputs.values(), lam=lam, **kw)
    assert calls, "the fallback path was not taken"
    torch.testing.assert_close(got, want, **TOL)


def test_diff2_is_dagpam_with_unit_lam_pos() -> None:
    """Functional unification: diff2 == daGPAM(affine=False, lam_pos=1, lam_neg=lam)."""
    b, h, hkv, lq, lk, d = SHAPES["gqa"]
    inputs = make_inputs("diff2", b, h, lq, lk, d, h_kv=hkv, generator=torch.Generator())
    q, k, v = inputs.values()
    lam = token_lam(b, h, lq)
    want = GF.dagpam_attention(
        q[:, 0::2], q[:, 1::2], k, v, lam_pos=1.0, lam_neg=lam, affine=False, is_causal=True
    )
    got = GF.diff2_attention(q, k, v, lam=lam, is_causal=True)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("return_weights", [False, True])
def test_diff2_gradcheck_with_token_lambda(return_weights: bool) -> None:
    g = torch.Generator().manual_seed(3)
    inputs = make_inputs("diff2", 1, 2, 3, 4, 3, h_kv=1, generator=g, requires_grad=True)
    lam = token_lam(1, 2, 3, requires_grad=True)
    mask = torch.tensor([[True, True, False, True]] * 3).view(1, 1, 3, 4)

    def fn(q, k, v, lam_t):
        res = GF.diff2_attention(
            q, k, v, lam=lam_t, attn_mask=mask, is_causal=True, return_weights=return_weights
        )
        return tuple(res) if return_weights else res

    assert torch.autograd.gradcheck(fn, (*inputs.values(), lam), eps=1e-6, atol=1e-5)


def test_diff2_dispatch() -> None:
    inputs = make_inputs("diff2", 2, 2, 4, 4, 4, generator=torch.Generator())
    lam = token_lam(2, 2, 4)
    direct = GF.diff2_attention(*inputs.values(), lam=lam, is_causal=True)
    got = GF.attention("diff2", *inputs.values(), lam=lam, is_causal=True)
    torch.testing.assert_close(got, direct, rtol=0, atol=0)


def test_diff2_bad_inputs() -> None:
    q, k, v = make_inputs("diff2", 2, 2, 4, 5, 3, generator=torch.Generator()).values()
    with pytest.raises(ValueError, match=r"2H query heads"):  # odd number of query heads
        GF.diff2_attention(q[:, :3], k[:, :1], v[:, :1], lam=0.5)
    with pytest.raises(ValueError, match=r"2H query heads"):  # 2 kv heads do not divide H = 1
        GF.diff2_attention(q[:, :2], k, v, lam=0.5)
    with pytest.raises(ValueError, match=r"lam .*\(B, H, Lq, 1\)"):
        GF.diff2_attention(q, k, v, lam=torch.rand(2, 2, 4, 2, dtype=q.dtype))
    with pytest.raises(ValueError, match=r"lam .*one entry per head"):
        GF.diff2_attention(q, k, v, lam=torch.rand(3, dtype=q.dtype))
    with pytest.raises(ValueError, match=r"lam .*\(B, H, Lq, 1\)"):
        GF.diff2_attention(q, k, v, lam=torch.rand(2, 4, 1, dtype=q.dtype))
    with pytest.raises(TypeError, match=r"lam"):
        GF.diff2_attention(q, k, v, lam="0.5")
    with pytest.raises(ValueError, match=r"lam"):
        GF.diff2_attention(q, k, v, lam=float("nan"))


# ------------------------------------------------------------------ daGPAM per-token lambda


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("mask", ["causal", "bool_per_head", "padding_causal", "float_minus_1e9"])
@pytest.mark.parametrize("shape", ["self", "mqa_cross", "cross_odd"])
def test_dagpam_token_lambda_matches_reference(shape: str, mask: str, affine: bool) -> None:
    b, h, hkv, lq, lk, d = SHAPES[shape]
    kw = masks(b, h, lq, lk)[mask]
    inputs = make_inputs("dagpam", b, h, lq, lk, d, h_kv=hkv, generator=torch.Generator())
    lam_neg = token_lam(b, h, lq, seed=2) * 2.0
    lam = {"lam_neg": lam_neg} if affine else {"lam_neg": lam_neg, "lam_pos": token_lam(1, h, lq)}
    want_out, want_w = dagpam_ref(**inputs, affine=affine, **lam, **_masked_like_reference(kw))
    out = GF.dagpam_attention(*inputs.values(), affine=affine, **lam, **kw)
    torch.testing.assert_close(out, want_out, **TOL)
    out_w, w = GF.dagpam_attention(
        *inputs.values(), affine=affine, return_weights=True, **lam, **kw
    )
    torch.testing.assert_close(w, want_w, **TOL)
    if affine:  # every row that sees a key sums to 1, whatever lambda each token has
        alive = want_w.abs().sum(-1) > 0
        torch.testing.assert_close(w.sum(-1)[alive], torch.ones_like(w.sum(-1)[alive]))


def test_dagpam_token_lambda_gradcheck() -> None:
    g = torch.Generator().manual_seed(4)
    inputs = make_inputs("dagpam", 1, 2, 3, 5, 3, generator=g, requires_grad=True)
    lam = token_lam(1, 2, 3, requires_grad=True)

    def fn(qp, qn, k, v, lam_neg):
        return GF.dagpam_attention(qp, qn, k, v, lam_neg=lam_neg, is_causal=True)

    assert torch.autograd.gradcheck(fn, (*inputs.values(), lam), eps=1e-6, atol=1e-5)


def test_dagpam_token_lambda_bad_shapes() -> None:
    qp, qn, k, v = make_inputs("dagpam", 2, 2, 4, 5, 3, generator=torch.Generator()).values()
    for bad in (torch.rand(2, 2, 4, 5), torch.rand(2, 2, 3, 1), torch.rand(2, 4, 1)):
        with pytest.raises(ValueError, match=r"lam_neg .*\(B, H, Lq, 1\)"):
            GF.dagpam_attention(qp, qn, k, v, lam_neg=bad.double())
    with pytest.raises(ValueError, match=r"lam_pos .*\(B, H, Lq, 1\)"):
        GF.dagpam_attention(
            qp, qn, k, v, lam_neg=0.2, lam_pos=torch.rand(2, 2, 4, 2).double(), affine=False
        )
    with pytest.raises(ValueError, match=r"lam_neg must be >= 0"):
        GF.dagpam_attention(qp, qn, k, v, lam_neg=-torch.rand(2, 2, 4, 1).double())


@settings(max_examples=60, deadline=None)
@given(
    b=st.integers(1, 2),
    h_kv=st.integers(1, 2),
    groups=st.integers(1, 2),
    lq=st.integers(1, 7),
    lk=st.integers(1, 7),
    d=st.integers(1, 5),
    causal=st.booleans(),
    p_keep=st.sampled_from([0.3, 1.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_token_lambdas_random(b, h_kv, groups, lq, lk, d, causal, p_keep, seed) -> None:
    """Random shapes and masks: diff2 and per-token daGPAM against the reference."""
    g = torch.Generator().manual_seed(seed)
    h = h_kv * groups
    keep = torch.rand(b, 1, lq, lk, generator=g) < p_keep
    lam = torch.rand(b, h, lq, 1, generator=g, dtype=torch.float64)
    inputs = make_inputs("diff2", b, h, lq, lk, d, h_kv=h_kv, generator=g)
    want, _ = diff2_ref(**inputs, lam=lam, attn_mask=keep, is_causal=causal)
    got = GF.diff2_attention(*inputs.values(), lam=lam, attn_mask=keep, is_causal=causal)
    torch.testing.assert_close(got, want, **TOL)
    q, k, v = inputs.values()
    want, _ = dagpam_ref(
        q[:, 0::2], q[:, 1::2], k, v, lam_neg=lam, attn_mask=keep, is_causal=causal
    )
    got = GF.dagpam_attention(
        q[:, 0::2], q[:, 1::2], k, v, lam_neg=lam, attn_mask=keep, is_causal=causal
    )
    torch.testing.assert_close(got, want, **TOL)


def test_diff2_gradcheck_per_head_mask() -> None:
    """gradcheck through the one-call path with a per-head mask (repeated for the pairs)."""
    g = torch.Generator().manual_seed(8)
    inputs = make_inputs("diff2", 1, 2, 3, 4, 3, h_kv=1, generator=g, requires_grad=True)
    keep = torch.rand(1, 2, 3, 4, generator=g) < 0.7
    keep[..., 0] = True
    lam = token_lam(1, 2, 3, requires_grad=True)

    def fn(q, k, v, lam_t):
        return GF.diff2_attention(q, k, v, lam=lam_t, attn_mask=keep)

    assert torch.autograd.gradcheck(fn, (*inputs.values(), lam), eps=1e-6, atol=1e-5)
