"""gpam.MultiheadAttention: torch equivalence, masks, GQA, dropout, lambda, parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import gpam
from gpam.nn import parameter_report

E, H = 12, 3  # embed_dim, num_heads (head_dim 4)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def copy_from_torch(ours: nn.Module, theirs: nn.MultiheadAttention) -> None:
    """Copy torch MHA's in_proj / out_proj into gpam's q/k/v/out projections."""
    wq, wk, wv = theirs.in_proj_weight.detach().chunk(3, dim=0)
    bq, bk, bv = theirs.in_proj_bias.detach().chunk(3, dim=0)
    with torch.no_grad():
        for name, w, b in (("q_proj", wq, bq), ("k_proj", wk, bk), ("v_proj", wv, bv)):
            lin = getattr(ours, name)
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        ours.out_proj.weight.copy_(theirs.out_proj.weight)
        ours.out_proj.bias.copy_(theirs.out_proj.bias)


def torch_pair(dtype=torch.float64) -> tuple[nn.Module, nn.MultiheadAttention]:
    theirs = nn.MultiheadAttention(E, H, batch_first=True, dtype=dtype)
    with torch.no_grad():  # torch zero-initialises the biases: make them matter
        theirs.in_proj_bias.normal_()
        theirs.out_proj.bias.normal_()
    ours = gpam.MultiheadAttention(E, H, attention="softmax", dtype=dtype)
    copy_from_torch(ours, theirs)
    return ours, theirs


def test_softmax_equals_torch_self_attention() -> None:
    ours, theirs = torch_pair()
    x = torch.randn(2, 7, E, dtype=torch.float64)
    want, _ = theirs(x, x, x, need_weights=False)
    torch.testing.assert_close(ours(x), want)


def test_softmax_equals_torch_cross_attention_with_masks() -> None:
    ours, theirs = torch_pair()
    q = torch.randn(2, 5, E, dtype=torch.float64)
    kv = torch.randn(2, 8, E, dtype=torch.float64)
    val = torch.randn(2, 8, E, dtype=torch.float64)
    pad = torch.zeros(2, 8, dtype=torch.bool)
    pad[0, 6:] = True
    pad[1, 3:] = True
    keep = torch.rand(5, 8) < 0.7
    keep[:, 0] = True  # torch gives NaN for fully masked rows; keep every row alive
    want, _ = theirs(q, kv, val, key_padding_mask=pad, attn_mask=~keep, need_weights=False)
    got = ours(q, kv, val, key_padding_mask=pad, attn_mask=keep)
    torch.testing.assert_close(got, want)


def test_softmax_equals_torch_causal() -> None:
    ours, theirs = torch_pair()
    x = torch.randn(3, 6, E, dtype=torch.float64)
    causal = nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.float64)
    want, _ = theirs(x, x, x, attn_mask=causal, need_weights=False)
    torch.testing.assert_close(ours(x, is_causal=True), want)
    # A float additive mask is accepted as well.
    torch.testing.assert_close(ours(x, attn_mask=causal), want)


def test_softmax_equals_torch_gradients() -> None:
    ours, theirs = torch_pair()
    x = torch.randn(2, 6, E, dtype=torch.float64)
    theirs(x, x, x, need_weights=False)[0].square().sum().backward()
    ours(x).square().sum().backward()
    wq, wk, wv = theirs.in_proj_weight.grad.chunk(3, dim=0)
    torch.testing.assert_close(ours.q_proj.weight.grad, wq)
    torch.testing.assert_close(ours.k_proj.weight.grad, wk)
    torch.testing.assert_close(ours.v_proj.weight.grad, wv)
    torch.testing.assert_close(ours.out_proj.weight.grad, theirs.out_proj.weight.grad)


def dims(attention: str) -> tuple[int, int]:
    """(embed_dim, num_heads) per variant; diff pairs heads, so it gets an even head count."""
    return (16, 4) if attention == "diff" else (E, H)


@pytest.mark.parametrize("attention", list(gpam.VARIANTS))
def test_shapes_self_and_cross(attention: str) -> None:
    e, h = dims(attention)
    mha = gpam.MultiheadAttention(e, h, attention=attention)
    x = torch.randn(2, 5, e)
    assert mha(x).shape == (2, 5, e)
    mem = torch.randn(2, 9, e)
    assert mha(x, mem, mem).shape == (2, 5, e)
    assert mha(x, mem).shape == (2, 5, e)  # value defaults to key


@pytest.mark.parametrize("attention", list(gpam.VARIANTS))
def test_key_padding_ignores_padded_keys(attention: str) -> None:
    e, h = dims(attention)
    mha = gpam.MultiheadAttention(e, h, attention=attention).double()
    x = torch.randn(2, 4, e, dtype=torch.float64)
    mem = torch.randn(2, 7, e, dtype=torch.float64)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[0, 5:] = True
    pad[1, 2:] = True
    out = mha(x, mem, key_padding_mask=pad)
    mem2 = mem.clone()
    mem2[pad] = torch.randn(int(pad.sum()), e, dtype=torch.float64) * 10
    torch.testing.assert_close(mha(x, mem2, key_padding_mask=pad), out)
    # key_padding_mask (True = padding) agrees with the equivalent attn_mask (True = keep).
    keep = (~pad).view(2, 1, 1, 7).expand(2, 1, 4, 7)
    torch.testing.assert_close(mha(x, mem, attn_mask=keep), out)
    # and the padding changes the result when not given
    assert not torch.allclose(mha(x, mem2), out)


@pytest.mark.parametrize("attention", list(gpam.VARIANTS))
def test_causal_does_not_see_the_future(attention: str) -> None:
    e, h = dims(attention)
    mha = gpam.MultiheadAttention(e, h, attention=attention).double()
    x = torch.randn(2, 6, e, dtype=torch.float64)
    out = mha(x, is_causal=True)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(2, 2, e, dtype=torch.float64)
    out2 = mha(x2, is_causal=True)
    torch.testing.assert_close(out2[:, :4], out[:, :4])
    assert not torch.allclose(out2[:, 4:], out[:, 4:])


@pytest.mark.parametrize("attention", list(gpam.VARIANTS))
def test_causal_flag_equals_tril_mask(attention: str) -> None:
    """``is_causal=True`` means the same as the explicit lower-triangular keep-mask."""
    e, h = dims(attention)
    mha = gpam.MultiheadAttention(e, h, attention=attention).double()
    x = torch.randn(2, 6, e, dtype=torch.float64)
    keep = torch.ones(6, 6, dtype=torch.bool).tril()
    torch.testing.assert_close(mha(x, attn_mask=keep), mha(x, is_causal=True))


@pytest.mark.parametrize("attention", list(gpam.VARIANTS))
def test_need_weights_path_equals_fast_path(attention: str) -> None:
    e, h = dims(attention)
    mha = gpam.MultiheadAttention(e, h, attention=attention).double()
    x = torch.randn(2, 5, e, dtype=torch.float64)
    mem = torch.randn(2, 8, e, dtype=torch.float64)
    pad = torch.zeros(2, 8, dtype=torch.bool)
    pad[1, 6:] = True
    fast = mha(x, mem, key_padding_mask=pad)
    out, w, _ = mha(x, mem, key_padding_mask=pad, need_weights=True)
    torch.testing.assert_close(out, fast)
    assert w.shape[0] == 2 and w.shape[-2:] == (5, 8)
    assert (w[1, ..., 6:] == 0).all()


def test_dagpam_lam_zero_equals_softmax_module() -> None:
    torch.manual_seed(1)
    sm = gpam.MultiheadAttention(E, H, attention="softmax").double()
    da = gpam.MultiheadAttention(E, H, attention="dagpam", lam_neg=0.0).double()
    _, unexpected = da.load_state_dict(sm.state_dict(), strict=False)
    assert not unexpected
    x = torch.randn(2, 6, E, dtype=torch.float64)
    torch.testing.assert_close(da(x, is_causal=True), sm(x, is_causal=True), rtol=0, atol=1e-12)
    da_half = gpam.MultiheadAttention(E, H, attention="dagpam", lam_neg=0.5).double()
    da_half.load_state_dict(da.state_dict())
    assert not torch.allclose(da_half(x, is_causal=True), sm(x, is_causal=True))


@pytest.mark.parametrize("attention", ["softmax", "dagpam", "cog", "sigmoid"])
def test_grouped_query_attention(attention: str) -> None:
    e, h, kvh = 16, 4, 2
    mha = gpam.MultiheadAttention(e, h, attention=attention, kv_heads=kvh, bias=False)
    full = gpam.MultiheadAttention(e, h, attention=attention, bias=False)
    head_dim = e // h
    assert n_params(full) - n_params(mha) == 2 * e * (h - kvh) * head_dim
    x = torch.randn(2, 5, e)
    out = mha(x, is_causal=True)
    assert out.shape == (2, 5, e) and torch.isfinite(out).all()
    out_w, w, _ = mha(x, is_causal=True, need_weights=True)
    torch.testing.assert_close(out_w, out)
    assert w.shape == (2, h, 5, 5)


def test_dropout_train_vs_eval() -> None:
    mha = gpam.MultiheadAttention(E, H, dropout=0.5)
    ref = gpam.MultiheadAttention(E, H, dropout=0.0)
    ref.load_state_dict(mha.state_dict())
    x = torch.randn(2, 6, E)
    mha.train()
    a, b = mha(x), mha(x)
    assert not torch.allclose(a, b)
    mha.eval()
    torch.testing.assert_close(mha(x), mha(x))
    torch.testing.assert_close(mha(x), ref.eval()(x))


def _lambda_params(**kw: object) -> tuple[nn.Module, list[str]]:
    """The module with learnable lambda and the names of parameters it adds."""
    base = gpam.MultiheadAttention(E, H, **kw)
    mha = gpam.MultiheadAttention(E, H, learnable_lambda=True, **kw)
    extra = sorted(set(dict(mha.named_parameters())) - set(dict(base.named_parameters())))
    return mha, extra


def test_learnable_lambda_gets_gradients_and_stays_nonnegative() -> None:
    mha, names = _lambda_params(lam_neg=0.5)
    assert names, "learnable_lambda=True adds no parameter"
    params = dict(mha.named_parameters())
    assert sum(params[n].numel() for n in names) == H  # one per head
    x = torch.randn(2, 6, E)
    mha(x, is_causal=True).square().sum().backward()
    for n in names:
        assert params[n].grad is not None and params[n].grad.abs().sum() > 0
    # Push the raw parameters far negative: the weights must stay an affine combination with
    # lam_neg >= 0, i.e. entries >= -lam_neg >= ... and, with lam_neg -> 0, softmax-like (>= 0).
    with torch.no_grad():
        for n in names:
            params[n].fill_(-1e4)
    lam_pos, lam_neg = mha.lambdas()
    assert (torch.as_tensor(lam_neg) >= 0).all()
    _, w, _ = mha(x, is_causal=True, need_weights=True)
    assert torch.isfinite(w).all()
    assert w.min() >= -1e-6
    torch.testing.assert_close(w.sum(-1), torch.ones(2, H, 6))


@pytest.mark.parametrize("lambda_param", ["clamp", "softplus"])
def test_learnable_lambda_training_keeps_it_nonnegative(lambda_param: str) -> None:
    """SGD steps that reward a smaller lambda never drive it below 0."""
    mha = gpam.MultiheadAttention(
        E, H, lam_neg=0.2, learnable_lambda=True, lambda_param=lambda_param
    )
    opt = torch.optim.SGD(mha.parameters(), lr=1.0)
    for _ in range(5):
        opt.zero_grad()
        _, lam_neg = mha.lambdas()
        loss = lam_neg.sum() + 0.0 * mha(torch.randn(1, 3, E)).sum()
        loss.backward()
        opt.step()
        assert (mha.lambdas()[1] >= 0).all()
    assert (mha.lambdas()[1] < 0.2).all()


def test_learnable_lambda_initial_value() -> None:
    """With learnable lambda at its initial value the output equals the fixed-lambda layer."""
    fixed = gpam.MultiheadAttention(E, H, lam_neg=0.3).double()
    mha = gpam.MultiheadAttention(E, H, lam_neg=0.3, learnable_lambda=True).double()
    mha.load_state_dict(fixed.state_dict(), strict=False)
    x = torch.randn(2, 5, E, dtype=torch.float64)
    torch.testing.assert_close(mha(x), fixed(x))


@pytest.mark.parametrize("bias", [False, True])
def test_neg_query_parameter_counts(bias: bool) -> None:
    head_dim = E // H
    sm = gpam.MultiheadAttention(E, H, attention="softmax", bias=bias)
    lin = gpam.MultiheadAttention(E, H, neg_query="linear", bias=bias)
    full = gpam.MultiheadAttention(E, H, neg_query="full", bias=bias)
    neg = gpam.MultiheadAttention(E, H, neg_query="negate", bias=bias)
    assert sm.extra_parameters() == 0
    if not bias:
        assert n_params(lin) - n_params(sm) == H * head_dim**2 == E * head_dim
        assert n_params(full) - n_params(sm) == E * E
    else:
        assert n_params(lin) - n_params(sm) in (E * head_dim, E * head_dim + E)
        assert n_params(full) - n_params(sm) == E * E + E
    assert n_params(neg) == n_params(sm)
    for m in (lin, full, neg):
        assert m.extra_parameters() == n_params(m) - n_params(sm)
    lam = gpam.MultiheadAttention(E, H, learnable_lambda=True, bias=bias)
    assert lam.extra_parameters() == lin.extra_parameters() + H


def test_neg_query_negate_matches_reference() -> None:
    """neg_query="negate": Q_neg = -Q_pos, output checked against the float64 reference."""
    from reference import dagpam_ref

    mha = gpam.MultiheadAttention(E, H, neg_query="negate", lam_neg=0.4).double()
    x = torch.randn(2, 6, E, dtype=torch.float64)

    def heads(t: Tensor) -> Tensor:
        return t.view(2, 6, H, E // H).transpose(1, 2)

    q, k, v = heads(mha.q_proj(x)), heads(mha.k_proj(x)), heads(mha.v_proj(x))
    o, _ = dagpam_ref(q, -q, k, v, lam_neg=0.4, is_causal=True)
    want = mha.out_proj(o.transpose(1, 2).reshape(2, 6, E))
    torch.testing.assert_close(mha(x, is_causal=True), want)


def test_parameter_report() -> None:
    model = nn.Sequential(
        gpam.MultiheadAttention(E, H, attention="dagpam"),
        nn.Linear(E, E),
        gpam.MultiheadAttention(E, H, attention="dagpam", neg_query="full"),
    )
    rep = parameter_report(model)
    assert rep["total"] == n_params(model)
    assert rep["extra"] == model[0].extra_parameters() + model[2].extra_parameters() > 0
    assert rep["softmax_equivalent"] == rep["total"] - rep["extra"]
    assert rep["overhead_pct"] == pytest.approx(100.0 * rep["extra"] / rep["softmax_equivalent"])
    sm = parameter_report(nn.Sequential(gpam.MultiheadAttention(E, H, attention="softmax")))
    assert sm["extra"] == 0 and sm["overhead_pct"] == 0.0


# ------------------------------------------------------- whole layer against the reference


def _heads(t: Tensor, n: int) -> Tensor:
    """(B, L, n * d) -> (B, n, L, d)."""
    b, length, width = t.shape
    return t.view(b, length, n, width // n).transpose(1, 2)


def _merge(o: Tensor) -> Tensor:
    """(B, n, L, d) -> (B, L, n * d)."""
    b, n, length, d = o.shape
    return o.transpose(1, 2).reshape(b, length, n * d)


def _keep(pad: Tensor, lq: int) -> Tensor:
    """Key padding (B, S), True = padding -> keep-mask (B, 1, lq, S)."""
    return (~pad).view(pad.shape[0], 1, 1, -1).expand(-1, 1, lq, -1)


@pytest.mark.parametrize(
    "kw",
    [
        {"neg_query": "linear"},
        {"neg_query": "full", "kv_heads": 1},
        {"neg_query": "linear", "affine": False, "lam_pos": 1.4, "lam_neg": 0.3},
        {"neg_query": "linear", "learnable_lambda": True, "lam_neg": 0.7},
    ],
    ids=["linear", "full_mqa", "non_affine", "learnable"],
)
@pytest.mark.parametrize("cross", [False, True])
def test_dagpam_layer_matches_reference(kw: dict, cross: bool) -> None:
    from reference import dagpam_ref

    mha = gpam.MultiheadAttention(E, H, attention="dagpam", **kw).double()
    kvh = kw.get("kv_heads", H)
    x = torch.randn(2, 5, E, dtype=torch.float64)
    mem = torch.randn(2, 7, E, dtype=torch.float64) if cross else x
    pad = torch.zeros(2, mem.shape[1], dtype=torch.bool)
    pad[1, -2:] = True
    q = _heads(mha.q_proj(x), H)
    if kw["neg_query"] == "linear":
        q_neg = torch.einsum("bhld,hde->bhle", q, mha.neg_weight)
    else:
        q_neg = _heads(mha.q_neg_proj(x), H)
    k, v = _heads(mha.k_proj(mem), kvh), _heads(mha.v_proj(mem), kvh)
    lam_pos, lam_neg = kw.get("lam_pos"), kw.get("lam_neg", 0.5)
    if kw.get("learnable_lambda"):
        with torch.no_grad():  # give the heads different lambdas
            mha.lam_neg_param.copy_(torch.tensor([0.0, 0.7, 2.0]))
        lam_neg = torch.tensor([0.0, 0.7, 2.0], dtype=torch.float64)
    o, _ = dagpam_ref(
        q,
        q_neg,
        k,
        v,
        lam_pos=lam_pos,
        lam_neg=lam_neg,
        affine=kw.get("affine", True),
        attn_mask=_keep(pad, 5),
        is_causal=not cross,
    )
    want = mha.out_proj(_merge(o))
    got = mha(x, mem if cross else None, key_padding_mask=pad, is_causal=not cross)
    torch.testing.assert_close(got, want)


def test_diff_layer_matches_reference() -> None:
    """Ye et al.'s layer: paired sub-heads, lambda re-parameterisation, RMSNorm, (1 - lam_init)."""
    from reference import diff_ref

    e, hb = 16, 4  # baseline heads 4 -> 2 differential heads, sub-head width d = 4
    mha = gpam.MultiheadAttention(e, hb, attention="diff", layer_idx=2).double()
    hd, d = hb // 2, e // hb
    x = torch.randn(2, 6, e, dtype=torch.float64)
    q = _heads(mha.q_proj(x), 2 * hd)
    k = _heads(mha.k_proj(x), 2 * hd)
    v = _heads(mha.v_proj(x), hd)
    assert v.shape[-1] == 2 * d
    lam_init = 0.8 - 0.6 * torch.exp(torch.tensor(-0.3 * 2, dtype=torch.float64))
    lam = (
        torch.exp((mha.lambda_q1 * mha.lambda_k1).sum())
        - torch.exp((mha.lambda_q2 * mha.lambda_k2).sum())
        + lam_init
    )
    o, _ = diff_ref(q[:, 0::2], q[:, 1::2], k[:, 0::2], k[:, 1::2], v, lam=lam, is_causal=True)
    o = o * torch.rsqrt(o.square().mean(-1, keepdim=True) + 1e-5) * mha.subln.weight
    want = mha.out_proj(_merge(o * (1 - lam_init)))
    torch.testing.assert_close(mha(x, is_causal=True), want)


def test_from_torch_equals_torch() -> None:
    theirs = nn.MultiheadAttention(E, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        theirs.in_proj_bias.normal_()
    ours = gpam.MultiheadAttention.from_torch(theirs, attention="softmax")
    x = torch.randn(2, 5, E, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x, x, x, need_weights=False)[0])
    da = gpam.MultiheadAttention.from_torch(theirs, attention="dagpam", lam_neg=0.0)
    torch.testing.assert_close(da(x), theirs(x, x, x, need_weights=False)[0])


@pytest.mark.parametrize("attention", list(gpam.VARIANTS))
def test_fully_padded_sequence_gives_bias_only(attention: str) -> None:
    """A batch element whose keys are all padding attends to nothing: out_proj(0) = its bias."""
    e, h = dims(attention)
    mha = gpam.MultiheadAttention(e, h, attention=attention)
    x = torch.randn(2, 4, e, requires_grad=True)
    pad = torch.zeros(2, 4, dtype=torch.bool)
    pad[1] = True
    out = mha(x, key_padding_mask=pad, is_causal=True)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], mha.out_proj.bias.expand(4, e).detach())
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in mha.parameters() if p.grad is not None)


@pytest.mark.parametrize("attention", list(gpam.VARIANTS))
def test_bfloat16_layer_stays_finite(attention: str) -> None:
    e, h = dims(attention)
    mha = gpam.MultiheadAttention(e, h, attention=attention, dtype=torch.bfloat16)
    x = (torch.randn(2, 6, e) * 20).to(torch.bfloat16)
    out = mha(x, is_causal=True)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    out.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in mha.parameters() if p.grad is not None)


def test_dagpam_layer_weights_are_affine() -> None:
    mha = gpam.MultiheadAttention(E, H, lam_neg=0.6)
    x = torch.randn(2, 5, E) * 10  # peaked attention, so the two maps differ clearly
    _, w, _ = mha(x, is_causal=True, need_weights=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, H, 5))
    assert (w < 0).any() and w.min() >= -0.6 - 1e-6
