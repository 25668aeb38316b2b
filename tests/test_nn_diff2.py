"""``MultiheadAttention(attention="diff2")``: layout, parameters, rotary, cache, unification."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import gpam
from gpam.nn import KVCache, RotaryEmbedding, apply_rotary
from reference import diff2_ref

E, H = 16, 4
D = E // H


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def by_hand(mha, x: Tensor, mem: Tensor, keep: Tensor | None, rotary=None, causal=False):
    """The layer computed from its weights with the float64 reference (no library attention)."""
    b, length, _ = x.shape
    s = mem.shape[1]
    q = mha.q_proj(x).view(b, length, 2 * H, D).transpose(1, 2)
    k = mha.k_proj(mem).view(b, s, mha.kv_heads, D).transpose(1, 2)
    v = mha.v_proj(mem).view(b, s, mha.kv_heads, D).transpose(1, 2)
    if rotary is not None:
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
    lam = torch.sigmoid(x @ mha.lambda_proj.weight.T).transpose(1, 2).unsqueeze(-1)
    out, _ = diff2_ref(q, k, v, lam=lam, attn_mask=keep, is_causal=causal)
    return mha.out_proj(out.transpose(1, 2).reshape(b, length, E))


@pytest.mark.parametrize("kv_heads", [None, 2, 1])
def test_layer_equals_reference_cross_attention_with_padding(kv_heads) -> None:
    torch.manual_seed(0)
    mha = gpam.MultiheadAttention(E, H, attention="diff2", kv_heads=kv_heads).double()
    x = torch.randn(2, 5, E, dtype=torch.float64)
    mem = torch.randn(2, 7, E, dtype=torch.float64)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 4:] = True
    got = mha(x, mem, key_padding_mask=pad)
    want = by_hand(mha, x, mem, (~pad).view(2, 1, 1, 7))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    out, w, _ = mha(x, mem, key_padding_mask=pad, need_weights=True)
    torch.testing.assert_close(out, got)
    lam = torch.sigmoid(mha.lambda_proj(x)).transpose(1, 2)  # (B, H, L)
    torch.testing.assert_close(w.sum(-1), 1.0 - lam)  # rows sum to 1 - lambda(token)
    assert (w[1, ..., 4:] == 0).all()


def test_rotary_reaches_both_query_sets_and_keys() -> None:
    torch.manual_seed(1)
    mha = gpam.MultiheadAttention(E, H, attention="diff2", kv_heads=2).double()
    x = torch.randn(2, 6, E, dtype=torch.float64)
    cos, sin = RotaryEmbedding(D)(torch.arange(6))
    rot = (cos.double(), sin.double())
    got = mha(x, is_causal=True, rotary=rot)
    torch.testing.assert_close(got, by_hand(mha, x, x, None, rot, causal=True))
    # rotating only the positive heads would be a different layer
    b = x.shape[0]
    q = mha.q_proj(x).view(b, 6, 2 * H, D).transpose(1, 2)
    assert not torch.allclose(apply_rotary(q, *rot)[:, 1::2], q[:, 1::2])


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_kv_cache_equals_full_pass_with_rotary(kv_heads) -> None:
    torch.manual_seed(2)
    mha = gpam.MultiheadAttention(E, H, attention="diff2", kv_heads=kv_heads).double().eval()
    x = torch.randn(2, 8, E, dtype=torch.float64)
    cos, sin = RotaryEmbedding(D)(torch.arange(8))
    cos, sin = cos.double(), sin.double()
    full = mha(x, is_causal=True, rotary=(cos, sin))
    cache, outs, start = KVCache(), [], 0
    for n in (3, 1, 2, 1, 1):
        rot = (cos[start : start + n], sin[start : start + n])
        out, _, cache = mha(x[:, start : start + n], kv_cache=cache, is_causal=True, rotary=rot)
        outs.append(out)
        start += n
    torch.testing.assert_close(torch.cat(outs, 1), full)


@pytest.mark.parametrize("bias", [True, False])
def test_parameter_counts(bias: bool) -> None:
    """diff2 = softmax + E*E (second half of the query projection, + E bias) + E*H (lambda)."""
    soft = gpam.MultiheadAttention(E, H, attention="softmax", bias=bias, kv_heads=2)
    d2 = gpam.MultiheadAttention(E, H, attention="diff2", bias=bias, kv_heads=2)
    extra = E * E + (E if bias else 0) + E * H
    assert n_params(d2) - n_params(soft) == extra
    assert d2.extra_parameters() == extra
    assert d2.q_proj.weight.shape == (2 * E, E) and d2.lambda_proj.bias is None
    assert d2.k_proj.weight.shape == soft.k_proj.weight.shape  # K/V unchanged (GQA)
    diff = gpam.MultiheadAttention(E, H, attention="diff", bias=bias, kv_heads=2)
    assert n_params(diff) - n_params(soft) == 6 * D  # V1: lambda vectors + norm gain only


def test_unification_diff2_equals_dagpam_module() -> None:
    """diff2 == daGPAM(affine=False, lam_pos=1, neg_query='full', sigmoid per-token lambda)."""
    torch.manual_seed(3)
    d2 = gpam.MultiheadAttention(E, H, attention="diff2", kv_heads=2, bias=False).double()
    da = gpam.MultiheadAttention(
        E, H, attention="dagpam", kv_heads=2, bias=False, affine=False, lam_pos=1.0,
        lam_neg=0.5, neg_query="full", lambda_mode="token", lambda_param="sigmoid",
    ).double()  # fmt: skip
    w = d2.q_proj.weight.detach().view(H, 2, D, E)  # head pairs (2i, 2i+1)
    with torch.no_grad():
        da.q_proj.weight.copy_(w[:, 0].reshape(E, E))
        da.q_neg_proj.weight.copy_(w[:, 1].reshape(E, E))
        for name in ("k_proj", "v_proj", "out_proj"):
            getattr(da, name).weight.copy_(getattr(d2, name).weight)
        da.lambda_proj.weight.copy_(d2.lambda_proj.weight)
        da.lambda_proj.bias.zero_()
    x = torch.randn(2, 7, E, dtype=torch.float64)
    mem = torch.randn(2, 5, E, dtype=torch.float64)
    cos, sin = RotaryEmbedding(D)(torch.arange(7))
    rot = (cos.double(), sin.double())
    torch.testing.assert_close(da(x, is_causal=True, rotary=rot), d2(x, is_causal=True, rotary=rot))
    torch.testing.assert_close(da(x, mem), d2(x, mem), rtol=1e-12, atol=1e-12)
    _, w_da, _ = da(x, is_causal=True, need_weights=True)
    _, w_d2, _ = d2(x, is_causal=True, need_weights=True)
    torch.testing.assert_close(w_da, w_d2, rtol=1e-12, atol=1e-12)


def test_gradients_reach_lambda_projection() -> None:
    mha = gpam.MultiheadAttention(E, H, attention="diff2")
    x = torch.randn(2, 5, E)
    mha(x, is_causal=True).square().sum().backward()
    assert mha.lambda_proj.weight.grad.abs().sum() > 0
    neg_rows = mha.q_proj.weight.grad.view(H, 2, D, E)[:, 1]  # query heads 2i + 1
    assert neg_rows.abs().sum() > 0  # the negative heads learn too
