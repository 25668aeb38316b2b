"""daGPAM's SDPA paths (one call over 2H query heads, two calls) agree with float64, masks included.

The one-call path orders the 2H query heads per K/V group so SDPA's grouped-query attention pairs
each query with the right K/V head (no K/V copy); it must match the reference for GQA, masks
with and without a head dimension (per-head masks fall back to two calls), dead rows, per-head
and per-token lambdas, and non-affine mixing.
"""

from __future__ import annotations

import math

import pytest
import torch

import gpam.functional.dagpam as dg
from reference import make_inputs, reference

PATHS = {"one_call": frozenset({"cpu"}), "two_calls": frozenset()}


@pytest.fixture(params=list(PATHS))
def path(request, monkeypatch):
    monkeypatch.setattr(dg, "ONE_CALL_DEVICES", PATHS[request.param])
    return request.param


def _mask(kind: str, b: int, h: int, lq: int, lk: int):
    g = torch.Generator().manual_seed(2)
    if kind == "none":
        return None
    heads = h if kind == "per_head" else 1
    keep = torch.rand(b, heads, lq, lk, generator=g) < 0.6
    keep[0, 0, 1] = False  # dead row
    if kind == "bool":
        return keep
    return torch.randn(b, heads, lq, lk, generator=g, dtype=torch.float64).masked_fill(~keep, -1e9)


@pytest.mark.parametrize("h_kv", [4, 2, 1])
@pytest.mark.parametrize("mask", ["none", "bool", "float", "per_head"])
@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_paths_match_float64_reference(path, h_kv, mask, causal):
    b, h, lq, lk = 2, 4, 5, 7
    x = make_inputs(
        "dagpam", b, h, lq, lk, 8, h_kv=h_kv, generator=torch.Generator().manual_seed(h_kv)
    )
    x = {n: t.requires_grad_() for n, t in x.items()}
    m = _mask(mask, b, h, lq, lk)
    lam = torch.tensor([0.1, 0.5, 0.9, 1.3], dtype=torch.float64)
    out = dg.dagpam_attention(*x.values(), lam_neg=lam, attn_mask=m, is_causal=causal)
    ref_mask = m if m is None or m.dtype == torch.bool else m.masked_fill(m <= -8192, -math.inf)
    want, _ = reference("dagpam", x, lam_neg=lam, attn_mask=ref_mask, is_causal=causal)
    torch.testing.assert_close(out, want, atol=1e-12, rtol=1e-10)
    grad = torch.randn_like(out)
    for name, a, w in zip(x, torch.autograd.grad(out, list(x.values()), grad),
                          torch.autograd.grad(want, list(x.values()), grad)):  # fmt: skip
        torch.testing.assert_close(a, w, atol=1e-11, rtol=1e-9, msg=name)


def test_one_call_applies_only_where_asked():
    q = torch.zeros(1, 2, 3, 4)
    assert not dg.one_call_applies(q, None)  # the default (measured: two calls on CPU)
    assert dg.one_call_applies(q, None, frozenset({"cpu"}))
    assert not dg.one_call_applies(q, torch.ones(1, 2, 3, 3, dtype=torch.bool), frozenset({"cpu"}))
    assert dg.one_call_applies(q, torch.ones(1, 1, 3, 3, dtype=torch.bool), frozenset({"cpu"}))


def test_one_call_non_affine_and_per_token_lambda(monkeypatch):
    monkeypatch.setattr(dg, "ONE_CALL_DEVICES", PATHS["one_call"])
    x = make_inputs("dagpam", 2, 2, 6, 6, 8, h_kv=1, generator=torch.Generator().manual_seed(9))
    lam = torch.rand(2, 2, 6, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    kw = {"lam_pos": 1.7, "lam_neg": lam, "affine": False, "is_causal": True}
    out = dg.dagpam_attention(*x.values(), **kw)
    want, _ = reference("dagpam", x, **kw)
    torch.testing.assert_close(out, want, atol=1e-12, rtol=1e-10)
