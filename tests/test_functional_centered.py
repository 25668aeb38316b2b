"""centered attention (softmax minus the uniform map over allowed keys): rows sum to 0."""

from __future__ import annotations

import math

import pytest
import torch

import gpam.functional as GF
from gpam.functional.centered import allowed_mean
from reference import centered_ref, make_inputs, softmax_ref

TOL = {"rtol": 1e-9, "atol": 1e-10}


def _inputs(b=2, h=4, hkv=2, lq=6, lk=6, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return make_inputs("centered", b, h, lq, lk, d, h_kv=hkv, generator=g)


def _pad(b: int, lk: int) -> torch.Tensor:
    keep = torch.ones(b, 1, 1, lk, dtype=torch.bool)
    keep[0, ..., 3:] = False
    keep[-1, ..., 1:] = False
    return keep


@pytest.mark.parametrize(
    "lq,lk,causal,mask",
    [
        (6, 6, True, None),
        (9, 4, True, None),  # more queries than keys: late rows see every key
        (4, 9, True, None),
        (6, 6, False, "pad"),
        (9, 4, True, "pad"),
        (5, 7, True, "rows"),
        (5, 7, False, "rows_per_head"),
    ],
)
def test_fast_path_is_sdpa_minus_allowed_mean(lq, lk, causal, mask) -> None:
    inputs = _inputs(lq=lq, lk=lk)
    g = torch.Generator().manual_seed(5)
    attn_mask = {
        None: None,
        "pad": _pad(2, lk),
        "rows": torch.rand(2, 1, lq, lk, generator=g) < 0.6,
        "rows_per_head": torch.rand(2, 4, lq, lk, generator=g) < 0.6,
    }[mask]
    want_out, want_w = centered_ref(**inputs, attn_mask=attn_mask, is_causal=causal)
    out = GF.centered_attention(*inputs.values(), attn_mask=attn_mask, is_causal=causal)
    torch.testing.assert_close(out, want_out, **TOL)
    _, w = GF.centered_attention(
        *inputs.values(), attn_mask=attn_mask, is_causal=causal, return_weights=True
    )
    torch.testing.assert_close(w, want_w, **TOL)
    # rows sum to 0; softmax part minus W is uniform over the allowed keys
    torch.testing.assert_close(w.sum(-1), torch.zeros_like(w.sum(-1)), rtol=0, atol=1e-12)
    _, a = softmax_ref(*inputs.values(), attn_mask=attn_mask, is_causal=causal)
    u = a - w
    allowed = a > 0
    n = allowed.sum(-1, keepdim=True).double()
    torch.testing.assert_close(u[allowed], (1.0 / n).expand_as(u)[allowed], **TOL)
    assert (u[~allowed].abs() < 1e-15).all()


def test_fully_masked_row_gives_zeros_and_no_nan() -> None:
    inputs = {k: t.requires_grad_() for k, t in _inputs(lq=3, lk=5).items()}
    keep = torch.ones(2, 1, 3, 5, dtype=torch.bool)
    keep[1, 0, 2] = False
    keep[0, 0, 0, 1:] = False  # a row seeing exactly one key: W = 1 - 1 = 0 on it
    out, w = GF.centered_attention(*inputs.values(), attn_mask=keep, return_weights=True)
    assert (out[1, :, 2] == 0).all() and (w[1, :, 2] == 0).all()
    torch.testing.assert_close(w[0, :, 0], torch.zeros_like(w[0, :, 0]), rtol=0, atol=1e-15)
    fast = GF.centered_attention(*inputs.values(), attn_mask=keep)
    assert (fast[1, :, 2] == 0).all()
    grads = torch.autograd.grad(fast.sum(), list(inputs.values()))
    assert all(torch.isfinite(gr).all() for gr in grads)


def test_minus_1e9_mask_means_masked() -> None:
    """A float mask of 0 / -1e9 means the same allowed set as the equivalent bool mask."""
    inputs = _inputs(lq=5, lk=7)
    keep = torch.rand(2, 1, 5, 7, generator=torch.Generator().manual_seed(2)) < 0.6
    keep[..., 0] = True
    big = torch.zeros(keep.shape, dtype=torch.float64).masked_fill(~keep, -1e9)
    want = GF.centered_attention(*inputs.values(), attn_mask=keep, is_causal=True)
    torch.testing.assert_close(
        GF.centered_attention(*inputs.values(), attn_mask=big, is_causal=True), want, **TOL
    )
    inf = big.masked_fill(~keep, -math.inf)
    torch.testing.assert_close(
        centered_ref(*inputs.values(), attn_mask=inf, is_causal=True)[0], want
    )


def test_allowed_mean_no_mask_is_plain_mean() -> None:
    q, k, v = _inputs(hkv=4).values()
    torch.testing.assert_close(allowed_mean(v, None, False, q, k), v.mean(-2, keepdim=True))


def test_centered_float32_fast_path() -> None:
    inputs = {k: t.float() for k, t in _inputs().items()}
    want, _ = centered_ref(*inputs.values(), attn_mask=_pad(2, 6), is_causal=True)
    got = GF.centered_attention(*inputs.values(), attn_mask=_pad(2, 6), is_causal=True)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mask", ["none", "pad"])
@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_mean_paths(mask: str, causal: bool) -> None:
    """gradcheck of the sum / cumulative-sum mean paths (no mask, key padding, causal)."""
    g = torch.Generator().manual_seed(6)
    inputs = make_inputs("centered", 2, 2, 4, 3, 3, h_kv=1, generator=g, requires_grad=True)
    attn_mask = _pad(2, 3) if mask == "pad" else None

    def fn(q, k, v):
        return GF.centered_attention(q, k, v, attn_mask=attn_mask, is_causal=causal)

    assert torch.autograd.gradcheck(fn, tuple(inputs.values()), eps=1e-6, atol=1e-5)
