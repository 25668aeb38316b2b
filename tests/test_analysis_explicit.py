"""The explicit (logit-keeping) attention path equals the library module, and gradients reach it."""

from __future__ import annotations

import pytest
import torch

from gpam.analysis import VariantSpec, explicit_attention
from gpam.analysis.tiny_model import TinyLM, copy_batch
from gpam.nn import MultiheadAttention

CASES = [
    ("softmax", {}),
    ("dagpam", {}),
    ("dagpam", {"lam_neg": 2.0, "neg_query": "full"}),
    ("dagpam", {"affine": False, "lam_pos": 1.5, "lam_neg": 1.0, "neg_query": "negate"}),
    ("dagpam", {"learnable_lambda": True}),
    ("diff", {"layer_idx": 3}),
    ("cog", {}),
    ("coda", {}),
    ("coda", {"attn_kwargs": {"gate": "mean"}}),
    ("sigmoid", {}),
    ("centered", {}),
    ("diff2", {}),
    ("dagpam", {"neg_query": "relu_linear"}),
    ("dagpam", {"neg_init": "neg_identity", "lam_neg": 1.0}),
    ("dagpam", {"lambda_mode": "token"}),
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("variant", "kwargs"), CASES)
def test_explicit_path_equals_module(variant, kwargs, causal):
    import inspect

    import gpam

    assert variant in gpam.VARIANTS
    params = inspect.signature(MultiheadAttention).parameters
    assert all(name in params for name in kwargs), sorted(set(kwargs) - set(params))
    torch.manual_seed(0)
    mha = MultiheadAttention(16, 4, attention=variant, dtype=torch.float64, **kwargs)
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    out, rec = explicit_attention(mha, x, is_causal=causal)
    torch.testing.assert_close(out, mha(x, is_causal=causal), rtol=1e-12, atol=1e-12)
    assert rec.weights is not None and rec.weights.shape[-2:] == (7, 7)
    if causal:  # nothing above the diagonal
        assert rec.weights.triu(1).abs().max() == 0


def test_logit_gradients_are_retained_for_both_dagpam_maps():
    torch.manual_seed(0)
    mha = MultiheadAttention(16, 4, attention="dagpam", lam_neg=1.0)
    x = torch.randn(2, 5, 16, requires_grad=True)
    out, rec = explicit_attention(mha, x)
    assert set(rec.logits) == {"S_pos", "S_neg"}
    out.pow(2).sum().backward()
    for name, s in rec.logits.items():
        assert s.grad is not None and s.grad.shape == (2, 4, 5, 5), name
        assert s.grad.abs().sum() > 0, name


def test_dagpam_weights_are_affine_with_expected_range():
    torch.manual_seed(0)
    mha = MultiheadAttention(16, 2, attention="dagpam", lam_neg=2.0, dtype=torch.float64)
    _, rec = explicit_attention(mha, torch.randn(1, 6, 16, dtype=torch.float64))
    torch.testing.assert_close(rec.weights.sum(-1), torch.ones(1, 2, 6, dtype=torch.float64))
    assert rec.weights.min() >= -2.0 and rec.weights.max() <= 3.0


def test_tiny_model_explicit_forward_equals_module_forward():
    torch.manual_seed(0)
    for spec in (VariantSpec("softmax"), VariantSpec("dagpam", lam_neg=1.0), VariantSpec("diff")):
        model = TinyLM(spec, vocab=10, max_len=8, width=16, heads=4, n_layers=2).double()
        ids, tgt, mask = copy_batch(3, 4, 10, torch.Generator().manual_seed(1))
        logits, records = model(ids)
        torch.testing.assert_close(logits, model.module_forward(ids), rtol=1e-10, atol=1e-10)
        assert len(records) == 2 and mask[:, 4:].all() and not mask[:, :4].any()
        assert torch.equal(tgt[:, 4:], ids[:, :4])  # the copy half repeats the symbols


def test_explicit_path_rejects_grouped_query_layers():
    mha = MultiheadAttention(16, 4, attention="softmax", kv_heads=2)
    with pytest.raises(ValueError, match="kv_heads"):
        explicit_attention(mha, torch.randn(1, 3, 16))


@pytest.mark.parametrize("variant", ["softmax", "cog", "sigmoid"])
def test_logit_gradient_equals_reference_autograd(variant):
    """dL/dS from the explicit path equals autograd through the float64 reference map of S
    (the reference gets S as queries against identity keys with scale 1)."""
    from tests.reference import cog_ref, sigmoid_ref, softmax_ref

    ref = {"softmax": softmax_ref, "cog": cog_ref, "sigmoid": sigmoid_ref}[variant]
    torch.manual_seed(0)
    mha = MultiheadAttention(8, 2, attention=variant, dtype=torch.float64)
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    out, rec = explicit_attention(mha, x, is_causal=True)
    out.pow(2).sum().backward()
    got = rec.logits["S"].grad
    q = mha.q_proj(x).view(1, 5, 2, 4).transpose(1, 2).detach()
    k = mha.k_proj(x).view(1, 5, 2, 4).transpose(1, 2).detach()
    v = mha.v_proj(x).view(1, 5, 2, 4).transpose(1, 2).detach()
    s = ((q @ k.transpose(-2, -1)) / 2.0).requires_grad_(True)
    eye = torch.eye(5, dtype=torch.float64).expand(1, 2, 5, 5)
    o = ref(s, eye, v, scale=1.0, is_causal=True)[0]
    mha.out_proj(o.transpose(1, 2).reshape(1, 5, 8)).pow(2).sum().backward()
    torch.testing.assert_close(got, s.grad, rtol=1e-9, atol=1e-12)


def test_coda_logit_gradient_flows_through_the_zero_mask():
    torch.manual_seed(0)
    mha = MultiheadAttention(8, 2, attention="coda", dtype=torch.float64)
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    out, rec = explicit_attention(mha, x, is_causal=True)
    out.pow(2).sum().backward()
    grad = rec.logits["S"].grad
    assert grad is not None and grad.triu(1).abs().max() == 0 and grad.abs().sum() > 0
