"""daGPAM layer options: ``lambda_mode`` fixed/head/token, ``neg_query``/``neg_init``, device."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import gpam
from gpam.nn import KVCache, RotaryEmbedding
from reference import dagpam_ref, dagpam_token_lambda, softmax_ref

E, H = 12, 3
D = E // H


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def copy_common(dst: nn.Module, src: nn.Module) -> None:
    with torch.no_grad():
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            getattr(dst, name).load_state_dict(getattr(src, name).state_dict())
        if hasattr(src, "neg_weight") and hasattr(dst, "neg_weight"):
            dst.neg_weight.copy_(src.neg_weight)


def token_layer(lam_neg: float = 0.3, **kw) -> gpam.MultiheadAttention:
    return gpam.MultiheadAttention(E, H, lam_neg=lam_neg, lambda_mode="token", **kw).double()


def perturb(mha: gpam.MultiheadAttention, scale: float = 0.5) -> None:
    """Make the token lambda vary per token (and go below 0 for some, where it is clamped)."""
    with torch.no_grad():
        mha.lambda_proj.weight.normal_(0.0, scale)


def heads(t: Tensor, b: int, length: int) -> Tensor:
    return t.view(b, length, -1, D).transpose(1, 2)


@pytest.mark.parametrize("lam_neg", [0.0, 0.3, 1.7])
def test_token_mode_starts_equal_to_fixed(lam_neg: float) -> None:
    torch.manual_seed(0)
    lam32 = float(torch.tensor(lam_neg, dtype=torch.float32))  # learnable lambdas are float32
    fixed = gpam.MultiheadAttention(E, H, lam_neg=lam32).double()
    tok = token_layer(lam_neg)
    copy_common(tok, fixed)
    x = torch.randn(2, 6, E, dtype=torch.float64)
    mem = torch.randn(2, 4, E, dtype=torch.float64)
    torch.testing.assert_close(tok(x, is_causal=True), fixed(x, is_causal=True), rtol=0, atol=0)
    torch.testing.assert_close(tok(x, mem), fixed(x, mem), rtol=0, atol=0)
    lam_pos, lam = tok.lambdas(x)
    assert lam.shape == (2, H, 6, 1) and (lam == lam32).all() and (lam_pos == 1 + lam32).all()


def test_token_mode_lam_zero_equals_softmax_exactly() -> None:
    torch.manual_seed(1)
    soft = gpam.MultiheadAttention(E, H, attention="softmax").double()
    tok = token_layer(0.0)
    copy_common(tok, soft)
    x = torch.randn(2, 5, E, dtype=torch.float64)
    torch.testing.assert_close(tok(x, is_causal=True), soft(x, is_causal=True), rtol=0, atol=0)


@pytest.mark.parametrize("lambda_param", ["clamp", "softplus"])
@pytest.mark.parametrize("neg_query", ["linear", "full", "relu_linear"])
def test_token_mode_equals_reference_cross_attention(neg_query: str, lambda_param: str) -> None:
    torch.manual_seed(2)
    mha = token_layer(0.4, neg_query=neg_query, lambda_param=lambda_param, kv_heads=1)
    perturb(mha)
    x = torch.randn(2, 5, E, dtype=torch.float64)
    mem = torch.randn(2, 7, E, dtype=torch.float64)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[0, 5:] = True
    b = x.shape[0]
    q = heads(mha.q_proj(x), b, 5)
    if neg_query == "linear":
        qn = torch.einsum("bhld,hde->bhle", q, mha.neg_weight)
    elif neg_query == "relu_linear":
        qn = torch.einsum("bhld,hde->bhle", q.clamp_min(0), mha.neg_weight)
    else:
        qn = heads(mha.q_neg_proj(x), b, 5)
    k, v = heads(mha.k_proj(mem), b, 7), heads(mha.v_proj(mem), b, 7)
    w, bias = mha.lambda_proj.weight, mha.lambda_proj.bias
    if lambda_param == "clamp":
        lam = dagpam_token_lambda(x, w, bias)
        assert (lam == 0).any() and (lam > 0).any()  # some tokens clamped at 0
    else:
        lam = torch.nn.functional.softplus(dagpam_token_lambda(x, w, bias, lo=None))
    out, _ = dagpam_ref(q, qn, k, v, lam_neg=lam, attn_mask=(~pad).view(2, 1, 1, 7))
    want = mha.out_proj(out.transpose(1, 2).reshape(b, 5, E))
    torch.testing.assert_close(mha(x, mem, key_padding_mask=pad), want, rtol=1e-10, atol=1e-10)
    _, weights, _ = mha(x, mem, key_padding_mask=pad, need_weights=True)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, H, 5, dtype=torch.float64))


@pytest.mark.parametrize("kv_heads", [None, 1])
def test_token_mode_kv_cache_equals_full_pass(kv_heads) -> None:
    torch.manual_seed(3)
    mha = token_layer(0.2, kv_heads=kv_heads).eval()
    perturb(mha)
    x = torch.randn(2, 7, E, dtype=torch.float64)
    cos, sin = (t.double() for t in RotaryEmbedding(D)(torch.arange(7)))
    full = mha(x, is_causal=True, rotary=(cos, sin))
    cache, outs, start = KVCache(), [], 0
    for n in (2, 1, 3, 1):
        rot = (cos[start : start + n], sin[start : start + n])
        out, _, cache = mha(x[:, start : start + n], kv_cache=cache, is_causal=True, rotary=rot)
        outs.append(out)
        start += n
    torch.testing.assert_close(torch.cat(outs, 1), full)


def test_token_lambda_gradients_from_exact_zero() -> None:
    """Starting at lam_neg = 0 (converted models), the clamp's straight-through gradient still
    reaches the lambda map's weight and bias."""
    mha = gpam.MultiheadAttention(E, H, lam_neg=0.0, lambda_mode="token")
    x = torch.randn(2, 6, E)
    mha(x * 3, is_causal=True).square().sum().backward()
    assert mha.lambda_proj.bias.grad.abs().sum() > 0
    assert mha.lambda_proj.weight.grad.abs().sum() > 0


def test_token_mode_affine_false_keeps_lam_pos_fixed() -> None:
    mha = token_layer(0.5, affine=False, lam_pos=1.2)
    perturb(mha)
    x = torch.randn(1, 4, E, dtype=torch.float64)
    lam_pos, lam_neg = mha.lambdas(x)
    assert lam_pos == 1.2 and lam_neg.shape == (1, H, 4, 1)
    _, w, _ = mha(x, need_weights=True)
    torch.testing.assert_close(w.sum(-1), 1.2 - lam_neg[..., 0])


def test_parameter_counts_per_mode() -> None:
    base = n_params(gpam.MultiheadAttention(E, H, attention="softmax"))
    linear = E * D  # H heads of D x D
    assert n_params(gpam.MultiheadAttention(E, H)) - base == linear
    assert n_params(gpam.MultiheadAttention(E, H, lambda_mode="head")) - base == linear + H
    tok = gpam.MultiheadAttention(E, H, lambda_mode="token")
    assert n_params(tok) - base == linear + E * H + H == tok.extra_parameters()
    relu = gpam.MultiheadAttention(E, H, neg_query="relu_linear")
    assert n_params(relu) - base == linear
    full = gpam.MultiheadAttention(E, H, neg_query="full", neg_init="neg_identity")
    assert n_params(full) - base == E * E + E


def test_learnable_lambda_alias_and_errors() -> None:
    mha = gpam.MultiheadAttention(E, H, learnable_lambda=True)
    assert mha.lambda_mode == "head" and mha.learnable_lambda
    assert gpam.MultiheadAttention(E, H, lambda_mode="head").learnable_lambda
    assert not gpam.MultiheadAttention(E, H, lambda_mode="token").learnable_lambda
    with pytest.raises(ValueError, match="lambda_mode"):
        gpam.MultiheadAttention(E, H, lambda_mode="layer")
    with pytest.raises(ValueError, match="learnable_lambda=True is an alias"):
        gpam.MultiheadAttention(E, H, learnable_lambda=True, lambda_mode="token")
    with pytest.raises(ValueError, match="neg_init"):
        gpam.MultiheadAttention(E, H, neg_init="identity")
    with pytest.raises(ValueError, match="neg_query"):
        gpam.MultiheadAttention(E, H, neg_query="relu")
    with pytest.raises(ValueError, match=r"lam_neg must lie in \(0, 1\)"):
        gpam.MultiheadAttention(E, H, lambda_mode="token", lambda_param="sigmoid", lam_neg=0.0)
    with pytest.raises(ValueError, match="lambdas.*needs x"):
        gpam.MultiheadAttention(E, H, lambda_mode="token").lambdas()


@pytest.mark.parametrize("neg_query", ["linear", "full"])
@pytest.mark.parametrize("lam_neg", [0.5, 1.0])
def test_neg_identity_gives_softmax_of_minus_s(neg_query: str, lam_neg: float) -> None:
    """neg_init='neg_identity': W = lam_pos softmax(S) - lam_neg softmax(-S) at start."""
    torch.manual_seed(4)
    mha = gpam.MultiheadAttention(
        E, H, lam_neg=lam_neg, neg_query=neg_query, neg_init="neg_identity"
    ).double()
    x = torch.randn(2, 6, E, dtype=torch.float64)
    _, w, _ = mha(x, is_causal=True, need_weights=True)
    q, k = heads(mha.q_proj(x), 2, 6), heads(mha.k_proj(x), 2, 6)
    _, a_pos = softmax_ref(q, k, k, is_causal=True)
    _, a_neg = softmax_ref(-q, k, k, is_causal=True)
    torch.testing.assert_close(w, (1 + lam_neg) * a_pos - lam_neg * a_neg)


def test_neg_identity_full_survives_from_torch() -> None:
    theirs = nn.MultiheadAttention(E, H, batch_first=True, dtype=torch.float64)
    ours = gpam.MultiheadAttention.from_torch(
        theirs, attention="dagpam", neg_query="full", neg_init="neg_identity"
    )
    torch.testing.assert_close(ours.q_neg_proj.weight, -ours.q_proj.weight)


def test_relu_linear_neg_identity_is_minus_relu() -> None:
    mha = gpam.MultiheadAttention(E, H, neg_query="relu_linear", neg_init="neg_identity")
    q = torch.randn(2, H, 5, D)
    torch.testing.assert_close(mha.negative_query(torch.randn(2, 5, E), q), -q.clamp_min(0))


@pytest.mark.parametrize("mode", ["head", "token"])
def test_learnable_lambdas_follow_device_and_stay_float32(mode: str) -> None:
    """Issue 11 item 6: lambda parameters are created on ``device``, in float32 or wider (issue
    20 item 9: a float64 layer keeps float64 lambdas, never below the layer's dtype)."""
    meta = gpam.MultiheadAttention(E, H, lambda_mode=mode, device="meta", affine=False, lam_pos=1.5)
    assert all(p.device.type == "meta" for p in meta.parameters())
    mha = gpam.MultiheadAttention(E, H, lambda_mode=mode, dtype=torch.float64)
    lam_params = [p for n, p in mha.named_parameters() if "lam" in n]
    assert lam_params and all(p.dtype == torch.float64 for p in lam_params)
    assert mha.q_proj.weight.dtype == torch.float64
    x = torch.randn(2, 4, E, dtype=torch.float64)
    assert mha(x, is_causal=True).dtype == torch.float64


@pytest.mark.parametrize("mode", ["head", "token"])
def test_half_precision_keeps_lambdas_float32(mode: str) -> None:
    mha = gpam.MultiheadAttention(E, H, lambda_mode=mode).to(torch.bfloat16)
    assert mha.q_proj.weight.dtype == torch.bfloat16
    lam = [p for n, p in mha.named_parameters() if "lam" in n]
    assert lam and all(p.dtype == torch.float32 for p in lam)
    x = torch.randn(2, 5, E, dtype=torch.bfloat16)
    out = mha(x, is_causal=True)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in lam)
    mha.double()  # upcasting is allowed: float64 layers keep float64 lambdas
    assert all(p.dtype == torch.float64 for n, p in mha.named_parameters() if "lam" in n)


def test_from_torch_refuses_diff2() -> None:
    with pytest.raises(ValueError, match="diff2"):
        gpam.MultiheadAttention.from_torch(nn.MultiheadAttention(E, H), attention="diff2")


def test_learnable_lambda_with_default_mode_is_head_as_in_configs() -> None:
    from gpam.models import LMConfig

    mha = gpam.MultiheadAttention(E, H, learnable_lambda=True, lambda_mode="fixed")
    assert mha.lambda_mode == "head"
    assert LMConfig(10, learnable_lambda=True, lambda_mode="fixed").lambda_mode == "head"
