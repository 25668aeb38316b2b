"""Every attention variant of ``gpam.functional`` against the slow float64 reference.

Covers causal, bool / float / 2-D masks, key padding, cross-attention (Lq != Lk), odd sizes,
grouped-query attention, explicit scale, gradients (``gradcheck`` and reference gradients),
fully masked rows, dropout bookkeeping and bfloat16.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import gpam
import gpam.functional as GF
from reference import (
    DEFAULT_KWARGS,
    REF_VARIANTS,
    expand_kv,
    make_inputs,
    reference,
    softmax_ref,
)

ALL = list(REF_VARIANTS)
# Variants whose definition gives finite additive float masks a meaning (a bias on the logits).
ADDITIVE = ["softmax", "dagpam", "diff", "diff2", "sigmoid", "centered"]


def lib(variant: str, inputs: dict[str, Tensor], **kwargs: object):
    """Call the library function of ``variant`` with the tensors of ``inputs`` in order."""
    fn = getattr(GF, f"{variant}_attention")
    return fn(*inputs.values(), **{**DEFAULT_KWARGS[variant], **kwargs})


def ref(variant: str, inputs: dict[str, Tensor], **kwargs: object) -> tuple[Tensor, Tensor]:
    return reference(variant, inputs, **{**DEFAULT_KWARGS[variant], **kwargs})


def bool_mask(shape: tuple[int, ...], p_keep: float = 0.7, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < p_keep


def case(name: str) -> tuple[dict[str, int], dict[str, object]]:
    """Shapes ``(b, h, h_kv, lq, lk, d)`` and masking keywords for one named scenario."""
    base = {"b": 2, "h": 3, "h_kv": 3, "lq": 6, "lk": 6, "d": 4}
    kw: dict[str, object] = {}
    if name == "plain":
        pass
    elif name == "causal":
        kw["is_causal"] = True
    elif name == "bool_mask":
        kw["attn_mask"] = bool_mask((2, 1, 6, 6))
    elif name == "bool_mask_per_head":
        kw["attn_mask"] = bool_mask((2, 3, 6, 6), seed=3)
    elif name == "mask_2d":
        kw["attn_mask"] = bool_mask((6, 6), seed=4)
    elif name == "float_mask_inf":
        keep = bool_mask((1, 1, 6, 6), seed=5)
        kw["attn_mask"] = torch.zeros(1, 1, 6, 6, dtype=torch.float64).masked_fill(~keep, -math.inf)
    elif name == "key_padding":
        keep = torch.ones(2, 1, 1, 6, dtype=torch.bool)
        keep[0, ..., 4:] = False
        keep[1, ..., 2:] = False
        kw["attn_mask"] = keep
    elif name == "causal_and_mask":
        kw["is_causal"] = True
        kw["attn_mask"] = bool_mask((2, 1, 6, 6), p_keep=0.8, seed=6)
    elif name == "cross":
        base.update(lq=5, lk=9)
        kw["attn_mask"] = bool_mask((2, 1, 5, 9), p_keep=0.8, seed=7)
    elif name == "cross_causal":
        base.update(lq=4, lk=7)
        kw["is_causal"] = True
    elif name == "odd":
        base.update(b=1, h=1, h_kv=1, lq=7, lk=7, d=5)
        kw["is_causal"] = True
    elif name == "gqa":
        base.update(h=4, h_kv=2)
        kw["attn_mask"] = bool_mask((2, 1, 6, 6), p_keep=0.8, seed=8)
    elif name == "mqa":
        base.update(h=4, h_kv=1, lq=3, lk=8)
    elif name == "scale":
        kw["scale"] = 0.37
    else:  # pragma: no cover - programming error in the test table
        raise KeyError(name)
    return base, kw


CASES = [
    "plain",
    "causal",
    "bool_mask",
    "bool_mask_per_head",
    "mask_2d",
    "float_mask_inf",
    "key_padding",
    "causal_and_mask",
    "cross",
    "cross_causal",
    "odd",
    "gqa",
    "mqa",
    "scale",
]


def build(variant: str, name: str, dtype=torch.float64, requires_grad=False, seed=0):
    shapes, kw = case(name)
    g = torch.Generator().manual_seed(seed)
    inputs = make_inputs(
        variant,
        shapes["b"],
        shapes["h"],
        shapes["lq"],
        shapes["lk"],
        shapes["d"],
        h_kv=shapes["h_kv"],
        dtype=dtype,
        generator=g,
        requires_grad=requires_grad,
    )
    mask = kw.get("attn_mask")
    if mask is not None and mask.is_floating_point():
        kw["attn_mask"] = mask.to(dtype)
    return inputs, kw


def test_variants_tuple() -> None:
    assert tuple(gpam.VARIANTS) == REF_VARIANTS


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("variant", ALL)
def test_matches_reference_float64(variant: str, name: str) -> None:
    inputs, kw = build(variant, name)
    want_out, want_w = ref(variant, inputs, **kw)
    out = lib(variant, inputs, **kw)
    assert out.dtype == torch.float64
    assert out.shape == want_out.shape
    torch.testing.assert_close(out, want_out, rtol=1e-9, atol=1e-10)
    out_w, w = lib(variant, inputs, return_weights=True, **kw)
    assert w.shape == want_w.shape
    torch.testing.assert_close(w, want_w, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(out_w, want_out, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", ["plain", "causal", "cross", "gqa", "float_mask_inf"])
@pytest.mark.parametrize("variant", ALL)
def test_matches_reference_float32(variant: str, name: str) -> None:
    """The fast (default) path in float32 agrees with the float64 reference."""
    inputs, kw = build(variant, name, dtype=torch.float32)
    want_out, _ = ref(variant, inputs, **kw)
    out = lib(variant, inputs, **kw)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), want_out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", ADDITIVE)
def test_finite_additive_float_mask(variant: str) -> None:
    """A float mask with finite values is a bias added to the logits (SDPA convention)."""
    inputs, _ = build(variant, "cross")
    g = torch.Generator().manual_seed(11)
    mask = torch.randn(2, 3, 5, 9, generator=g, dtype=torch.float64)
    mask[:, :, :, 0] = -math.inf
    want_out, want_w = ref(variant, inputs, attn_mask=mask)
    out, w = lib(variant, inputs, attn_mask=mask, return_weights=True)
    torch.testing.assert_close(w, want_w, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(out, want_out, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(lib(variant, inputs, attn_mask=mask), want_out)


@pytest.mark.parametrize("name", ["causal_and_mask", "cross", "gqa"])
@pytest.mark.parametrize("variant", ALL)
def test_gradients_match_reference(variant: str, name: str) -> None:
    inputs, kw = build(variant, name, requires_grad=True)
    g = torch.Generator().manual_seed(2)
    want_out, _ = ref(variant, inputs, **kw)
    upstream = torch.randn(want_out.shape, generator=g, dtype=torch.float64)
    want = torch.autograd.grad((want_out * upstream).sum(), list(inputs.values()))
    got = torch.autograd.grad((lib(variant, inputs, **kw) * upstream).sum(), list(inputs.values()))
    for a, b, key in zip(got, want, inputs):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9, msg=f"grad of {key}")


@pytest.mark.parametrize("return_weights", [False, True])
@pytest.mark.parametrize("variant", ALL)
def test_gradcheck(variant: str, return_weights: bool) -> None:
    g = torch.Generator().manual_seed(3)
    inputs = make_inputs(variant, 1, 2, 3, 4, 3, h_kv=1, generator=g, requires_grad=True)
    mask = torch.tensor([[True, True, False, True]] * 3).view(1, 1, 3, 4)

    def fn(*tensors: Tensor):
        res = lib(
            variant,
            dict(zip(inputs, tensors)),
            attn_mask=mask,
            is_causal=True,
            return_weights=return_weights,
        )
        return tuple(res) if return_weights else res

    assert torch.autograd.gradcheck(fn, tuple(inputs.values()), eps=1e-6, atol=1e-5)


def test_gradcheck_dagpam_lambda_tensor() -> None:
    """Gradients flow to a per-head lambda tensor (learnable lambda in the modules)."""
    g = torch.Generator().manual_seed(4)
    inputs = make_inputs("dagpam", 1, 2, 3, 5, 3, generator=g, requires_grad=True)
    lam = torch.tensor([0.3, 0.9], dtype=torch.float64, requires_grad=True)

    def fn(qp, qn, k, v, lam_neg):
        return GF.dagpam_attention(qp, qn, k, v, lam_neg=lam_neg, is_causal=True)

    assert torch.autograd.gradcheck(
        fn, (*inputs.values(), lam), eps=1e-6, atol=1e-5, fast_mode=True
    )


# ------------------------------------------------------------------------------------ daGPAM


@pytest.mark.parametrize("name", ["plain", "causal_and_mask", "cross", "gqa"])
def test_dagpam_rows_sum_to_one_with_negative_entries(name: str) -> None:
    inputs, kw = build("dagpam", name)
    _, w = GF.dagpam_attention(*inputs.values(), lam_neg=0.7, return_weights=True, **kw)
    _, a = softmax_ref(inputs["q_pos"], inputs["k"], inputs["v"], **kw)
    alive = a.sum(-1) > 0.5  # rows with at least one visible key
    assert alive.float().mean() > 0.5
    sums = w.sum(-1)
    torch.testing.assert_close(sums[alive], torch.ones_like(sums[alive]), rtol=0, atol=1e-12)
    assert (w[~alive] == 0).all()
    assert (w < 0).any()
    assert w.min() >= -0.7 - 1e-12 and w.max() <= 1.7 + 1e-12


def test_dagpam_non_affine_row_sums() -> None:
    inputs, kw = build("dagpam", "causal_and_mask")
    want_out, want_w = reference("dagpam", inputs, lam_pos=1.3, lam_neg=0.6, affine=False, **kw)
    out, w = GF.dagpam_attention(
        *inputs.values(), lam_pos=1.3, lam_neg=0.6, affine=False, return_weights=True, **kw
    )
    alive = want_w.abs().sum(-1) > 0
    sums = w.sum(-1)[alive]
    torch.testing.assert_close(sums, torch.full_like(sums, 1.3 - 0.6), rtol=0, atol=1e-12)
    torch.testing.assert_close(w, want_w, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(out, want_out, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(
        GF.dagpam_attention(*inputs.values(), lam_pos=1.3, lam_neg=0.6, affine=False, **kw),
        want_out,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", ["plain", "causal_and_mask", "gqa"])
def test_dagpam_lam_zero_equals_softmax(name: str, dtype: torch.dtype) -> None:
    """SPEC 1: with lam_neg = 0 daGPAM is softmax attention exactly (same bits)."""
    inputs, kw = build("dagpam", name, dtype=dtype)
    q_pos, q_neg, k, v = inputs.values()
    atol = 0.0
    sm_out, sm_w = GF.softmax_attention(q_pos, k, v, return_weights=True, **kw)
    da_out, da_w = GF.dagpam_attention(q_pos, q_neg, k, v, lam_neg=0.0, return_weights=True, **kw)
    torch.testing.assert_close(da_w, sm_w, rtol=0, atol=atol)
    torch.testing.assert_close(da_out, sm_out, rtol=0, atol=atol)
    fast = GF.dagpam_attention(q_pos, q_neg, k, v, lam_neg=0.0, **kw)
    torch.testing.assert_close(fast, GF.softmax_attention(q_pos, k, v, **kw), rtol=0, atol=atol)


@pytest.mark.parametrize(
    "lam",
    [torch.tensor([0.0, 0.4, 1.5]), torch.tensor([0.2, 0.5]).view(2, 1, 1, 1)],
    ids=["per_head", "per_batch"],
)
def test_dagpam_lambda_tensor_shapes(lam: Tensor) -> None:
    inputs, kw = build("dagpam", "causal")
    lam = lam.double()
    want_out, want_w = reference("dagpam", inputs, lam_neg=lam, **kw)
    out, w = GF.dagpam_attention(*inputs.values(), lam_neg=lam, return_weights=True, **kw)
    torch.testing.assert_close(w, want_w, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(out, want_out, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(GF.dagpam_attention(*inputs.values(), lam_neg=lam, **kw), want_out)


def test_dagpam_default_lambda_is_half() -> None:
    inputs, _ = build("dagpam", "plain")
    want_out, _ = reference("dagpam", inputs, lam_neg=0.5)
    torch.testing.assert_close(GF.dagpam_attention(*inputs.values()), want_out)


# ------------------------------------------------------------------------------ other peers


def test_sigmoid_default_bias_is_minus_log_n() -> None:
    inputs, _ = build("sigmoid", "cross")
    want_out, want_w = reference("sigmoid", inputs, bias=None)
    out, w = GF.sigmoid_attention(*inputs.values(), return_weights=True)
    torch.testing.assert_close(w, want_w)
    torch.testing.assert_close(out, want_out)
    out2 = GF.sigmoid_attention(*inputs.values(), bias=-1.25)
    torch.testing.assert_close(out2, reference("sigmoid", inputs, bias=-1.25)[0])


def test_coda_alpha_beta() -> None:
    inputs, kw = build("coda", "causal_and_mask")
    want_out, want_w = reference("coda", inputs, alpha=0.7, beta=2.0, **kw)
    out, w = GF.coda_attention(*inputs.values(), alpha=0.7, beta=2.0, return_weights=True, **kw)
    torch.testing.assert_close(w, want_w)
    torch.testing.assert_close(out, want_out)
    assert w.abs().max() < 1.0


def test_cog_abs_rows_sum_to_one() -> None:
    inputs, kw = build("cog", "causal_and_mask")
    _, w = GF.cog_attention(*inputs.values(), return_weights=True, **kw)
    sums = w.abs().sum(-1)
    visible = sums > 0
    torch.testing.assert_close(sums[visible], torch.ones_like(sums[visible]))
    assert (w < 0).any()


@pytest.mark.parametrize("variant", ["softmax", "dagpam", "cog", "coda", "sigmoid"])
def test_attention_dispatch(variant: str) -> None:
    inputs, kw = build(variant, "causal_and_mask")
    direct = lib(variant, inputs, **kw)
    if variant == "dagpam":
        q, qn, k, v = inputs.values()
        got = GF.attention("dagpam", q, k, v, q_neg=qn, lam_neg=0.5, **kw)
    else:
        got = GF.attention(variant, *inputs.values(), **kw)
    torch.testing.assert_close(got, direct, rtol=0, atol=0)


# ---------------------------------------------------------------- masked rows, dropout, bf16


def _fully_masked_mask(lq: int, lk: int, kind: str) -> Tensor:
    keep = bool_mask((2, 1, lq, lk), p_keep=0.6, seed=9)
    keep[0, 0, 1] = False
    keep[1, 0, 0] = False
    keep[1, 0, lq - 1] = False
    if kind == "bool":
        return keep
    return torch.zeros(keep.shape, dtype=torch.float64).masked_fill(~keep, -math.inf)


@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("variant", ALL)
def test_fully_masked_rows_give_zeros(variant: str, kind: str) -> None:
    inputs, _ = build(variant, "cross", requires_grad=True)
    mask = _fully_masked_mask(5, 9, kind)
    dead = ~(mask.bool() if kind == "bool" else mask > -math.inf).any(-1)  # (2, 1, 5)
    dead = dead.expand(2, 3, 5)
    for return_weights in (False, True):
        res = lib(variant, inputs, attn_mask=mask, return_weights=return_weights)
        out = res[0] if return_weights else res
        assert torch.isfinite(out).all()
        assert (out[dead] == 0).all()
        assert (out[~dead].abs().sum(-1) > 0).all()
        if return_weights:
            assert torch.isfinite(res[1]).all() and (res[1][dead] == 0).all()
        grads = torch.autograd.grad(out.sum(), list(inputs.values()))
        assert all(torch.isfinite(gr).all() for gr in grads)
        want_out, _ = ref(variant, inputs, attn_mask=mask)
        torch.testing.assert_close(out, want_out, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("variant", ALL)
def test_dropout_weights_are_the_ones_used(variant: str) -> None:
    inputs, kw = build(variant, "causal", dtype=torch.float32)
    torch.manual_seed(5)
    out, w = lib(variant, inputs, dropout_p=0.5, return_weights=True, **kw)
    v = expand_kv(inputs["v"], w.shape[1])
    gate = inputs.get("gate", 1.0)  # gated: the output gate multiplies W V
    torch.testing.assert_close(out, (w @ v) * gate, rtol=1e-5, atol=1e-5)
    _, w0 = lib(variant, inputs, return_weights=True, **kw)
    assert not torch.allclose(w, w0)
    if variant == "centered":  # dropout acts on the softmax map, not on the uniform part
        _, a0 = GF.softmax_attention(*inputs.values(), return_weights=True, **kw)
        a, u = w + (a0 - w0), a0 - w0  # dropped softmax map, and U = softmax - W
        kept = a.abs() > 1e-6  # float32 round-off of w + U on dropped entries
        assert 0 < kept.sum() < (a0 != 0).sum()
        torch.testing.assert_close(a[kept], 2.0 * a0[kept], rtol=1e-5, atol=1e-6)
        assert a[~kept].abs().max() < 1e-6
        torch.testing.assert_close(u.sum(-1), torch.ones_like(u.sum(-1)))
    elif variant not in ("dagpam", "diff", "diff2"):  # two maps may be dropped independently
        # Dropped entries are exactly zero and kept ones are rescaled by 1 / (1 - p).
        kept = w != 0
        assert 0 < kept.sum() < (w0 != 0).sum()
        torch.testing.assert_close(w[kept], 2.0 * w0[kept], rtol=1e-5, atol=1e-6)
    out_fast = lib(variant, inputs, dropout_p=0.5, **kw)
    assert out_fast.shape == out.shape and torch.isfinite(out_fast).all()
    assert not torch.allclose(out_fast, lib(variant, inputs, **kw))


@pytest.mark.parametrize("variant", ALL)
def test_bfloat16_finite_and_close(variant: str) -> None:
    inputs, kw = build(variant, "causal_and_mask", dtype=torch.bfloat16, requires_grad=True)
    out = lib(variant, inputs, **kw)
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out).all()
    want_out, _ = ref(variant, inputs, **kw)
    torch.testing.assert_close(out.double(), want_out, rtol=5e-2, atol=5e-2)
    grads = torch.autograd.grad(out.float().sum(), list(inputs.values()))
    assert all(torch.isfinite(gr).all() for gr in grads)
    # Large logits must not overflow in bfloat16 either.
    big = {k: (t.detach() * 30).requires_grad_() for k, t in inputs.items()}
    out_big = lib(variant, big, **kw)
    assert torch.isfinite(out_big).all()


def test_attention_dispatch_diff() -> None:
    inputs, kw = build("diff", "causal_and_mask")
    q1, q2, k1, k2, v = inputs.values()
    direct = GF.diff_attention(q1, q2, k1, k2, v, lam=0.3, **kw)
    got = GF.attention("diff", q1, k1, v, q2=q2, k2=k2, lam=0.3, **kw)
    torch.testing.assert_close(got, direct, rtol=0, atol=0)
    # Without q2/k2, adjacent sub-heads (2i, 2i+1) of q and k form the pairs of head i.
    q = torch.stack([q1, q2], dim=2).flatten(1, 2)
    k = torch.stack([k1, k2], dim=2).flatten(1, 2)
    want, _ = reference("diff", inputs, lam=0.3, **kw)
    torch.testing.assert_close(GF.attention("diff", q, k, v, lam=0.3, **kw), want)
