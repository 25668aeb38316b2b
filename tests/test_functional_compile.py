"""Every variant compiles with ``torch.compile(fullgraph=True)`` (no graph breaks, no host syncs).

Data-dependent validation (NaN masks, negative lambdas, token-id ranges) reads tensor values, a
device-to-host sync and a graph break; it runs only in CPU eager mode or with
``GPAM_DEBUG_CHECKS=1``, never while compiling. ``backend="aot_eager"`` traces the forward and
backward graphs (as inductor would) without generating code, so these tests stay fast.
"""

from __future__ import annotations

import pytest
import torch

import gpam
import gpam.functional as GF
from reference import DEFAULT_KWARGS, make_inputs

MASKS = ("bool", "padding", "causal")


def _mask_kwargs(kind: str, b: int, lq: int, lk: int) -> dict[str, object]:
    if kind == "causal":
        return {"is_causal": True}
    keep = torch.rand(b, 1, lq, lk, generator=torch.Generator().manual_seed(3)) < 0.7
    keep[0, 0, 1] = False  # one dead row (every key masked)
    if kind == "bool":
        return {"attn_mask": keep}
    pad = torch.zeros(b, 1, 1, lk)  # additive padding mask: the last two keys of batch 1
    pad[1, ..., -2:] = torch.finfo(torch.float32).min
    return {"attn_mask": pad}


@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("variant", gpam.VARIANTS)
def test_variant_compiles_fullgraph_and_matches_eager(variant, kind):
    torch._dynamo.reset()
    fn = getattr(GF, f"{variant}_attention")
    inputs = make_inputs(variant, 2, 2, 5, 6, 8, dtype=torch.float32, requires_grad=True)
    kwargs = {**DEFAULT_KWARGS[variant], **_mask_kwargs(kind, 2, 5, 6)}
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    got = compiled(*inputs.values(), **kwargs)
    want = fn(*inputs.values(), **kwargs)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert torch.isfinite(got).all()
    grad = torch.randn_like(want)
    g_got = torch.autograd.grad(got, list(inputs.values()), grad)
    g_want = torch.autograd.grad(want, list(inputs.values()), grad)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_learnable_lambda_tensor_compiles():
    """A per-head lambda tensor is validated (>= 0) in eager mode only, not while compiling."""
    torch._dynamo.reset()
    q, qn, k, v = (torch.randn(1, 2, 4, 8) for _ in range(4))
    lam = torch.tensor([0.2, 0.7], requires_grad=True)
    fn = GF.dagpam_attention
    got = torch.compile(fn, fullgraph=True, backend="aot_eager")(q, qn, k, v, lam_neg=lam)
    torch.testing.assert_close(got, fn(q, qn, k, v, lam_neg=lam))
    with pytest.raises(ValueError, match="lam_neg must be >= 0"):
        fn(q, qn, k, v, lam_neg=-lam)  # eager CPU still checks values


def test_language_model_compiles_fullgraph():
    """The LM's token-id range check (a sync) is skipped while compiling; eager still raises."""
    torch._dynamo.reset()
    from gpam.models import LMConfig, TransformerLM

    torch.manual_seed(0)
    lm = TransformerLM(LMConfig(50, d_model=16, n_layers=1, n_heads=2, attention="dagpam")).eval()
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        got = torch.compile(lm, fullgraph=True, backend="aot_eager")(ids)
        want = lm(ids)
    got, want = (x[0] if isinstance(x, tuple) else x for x in (got, want))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="outside"):
        lm(ids + 50)


def test_debug_checks_switch(monkeypatch):
    from gpam.functional._checks import data_checks_enabled

    t = torch.zeros(1)
    assert data_checks_enabled(t)
    monkeypatch.setattr("gpam.functional._checks._compiling", lambda: True)
    monkeypatch.setenv("GPAM_DEBUG_CHECKS", "1")
    assert not data_checks_enabled(t)  # never while tracing


def test_sigmoid_bias_tensor_compiles():
    """A tensor bias is checked for finiteness in CPU eager mode only (no sync when compiled)."""
    torch._dynamo.reset()
    q, k, v = (torch.randn(1, 2, 4, 8) for _ in range(3))
    bias = torch.full((1, 2, 4, 1), -1.5)
    fn = GF.sigmoid_attention
    got = torch.compile(fn, fullgraph=True, backend="aot_eager")(q, k, v, bias=bias)
    torch.testing.assert_close(got, fn(q, k, v, bias=bias))
    with pytest.raises(ValueError, match="finite"):
        fn(q, k, v, bias=bias.masked_fill(bias < 0, float("inf")))
