"""torch.compile on a daGPAM gpam.MultiheadAttention gives the eager outputs (and gradients)."""

from __future__ import annotations

import pytest
import torch

import gpam


def _layer(seed: int) -> gpam.MultiheadAttention:
    torch.manual_seed(seed)
    return gpam.MultiheadAttention(16, 2, attention="dagpam", lam_neg=0.4, learnable_lambda=True)


def test_compiled_dagpam_layer_aot_eager_outputs_and_grads():
    """Dynamo + AOT autograd (forward and backward graphs traced, no code generation)."""
    mha = _layer(0)
    x = torch.randn(2, 9, 16)
    got = torch.compile(mha, backend="aot_eager")(x, is_causal=True)
    want = mha(x, is_causal=True)
    torch.testing.assert_close(got, want)
    got.square().sum().backward()
    g_compiled = [p.grad.clone() for p in mha.parameters()]
    mha.zero_grad()
    want.square().sum().backward()
    for a, b in zip(g_compiled, (p.grad for p in mha.parameters())):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_compiled_dagpam_layer_inductor_matches_eager():
    """The default inductor backend (generates and compiles C++ on CPU: tens of seconds)."""
    mha = _layer(1).eval()
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        got = torch.compile(mha)(x, is_causal=True)
        want = mha(x, is_causal=True)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
