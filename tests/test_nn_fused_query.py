"""daGPAM's linear negative query from the same GEMM as the query (issue 19, item 1).

The fused projection ``[W; N^T W]`` must give what ``Q_pos N`` gives (the unfused path, taken
when ``fused_query`` returns None), outputs and every parameter's gradient to round-off in
float64: rotary positions, masks, padding, GQA, KV-cache decoding, biases on and off.
"""

from __future__ import annotations

import pickle

import pytest
import torch

import gpam
import gpam.functional.dagpam as dg
from gpam.nn import KVCache, RotaryEmbedding
from gpam.nn.dagpam import DagpamParams

E, H = 16, 4
TOL = {"rtol": 1e-12, "atol": 1e-12}


def _layer(**kw) -> gpam.MultiheadAttention:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return gpam.MultiheadAttention(E, H, attention="dagpam", lam_neg=0.3, **kw).double()


def _fwd_bwd(mha, x, **kw):  # type: ignore[no-untyped-def]
    mha.zero_grad()
    out = mha(x, **kw)
    out = out.output if isinstance(out, tuple) else out
    out.square().sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in mha.named_parameters()}


def _unfused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DagpamParams, "fused_query", lambda self, w, b: None)


@pytest.mark.parametrize("pairs_call", ["one", "split"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kv_heads", [None, 2])
@pytest.mark.parametrize("rotary", [False, True])
@pytest.mark.parametrize("lambda_mode", ["fixed", "head", "token"])
def test_fused_equals_unfused(lambda_mode, rotary, kv_heads, bias, pairs_call, monkeypatch) -> None:
    """The fused query's pairs of heads, as one SDPA call (the CPU default) or split into two
    calls (``dagpam_pairs``' fallback), against the unfused layer's separate queries."""
    if pairs_call == "split":
        monkeypatch.setattr(dg, "PAIRS_ONE_CALL_DEVICES", frozenset())
    mha = _layer(lambda_mode=lambda_mode, kv_heads=kv_heads, bias=bias)
    with torch.no_grad():  # start away from lam_neg's zero-gradient corner
        for p in mha.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, 6, E, dtype=torch.float64)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 4:] = True
    kw = {"key_padding_mask": pad, "is_causal": True}
    if rotary:
        kw["rotary"] = RotaryEmbedding(E // H)(torch.arange(6))
    got, got_g = _fwd_bwd(mha, x, **kw)
    _unfused(monkeypatch)
    want, want_g = _fwd_bwd(mha, x, **kw)
    torch.testing.assert_close(got, want, **TOL)
    assert got_g.keys() == want_g.keys()
    for name in want_g:
        torch.testing.assert_close(got_g[name], want_g[name], **TOL, msg=name)


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_fused_rotary_decoding_equals_full(kv_heads, monkeypatch) -> None:
    mha = _layer(kv_heads=kv_heads).eval()
    rope = RotaryEmbedding(E // H)
    x = torch.randn(2, 6, E, dtype=torch.float64)
    with torch.no_grad():
        cache, outs = KVCache(), []
        for start, n in ((0, 3), (3, 1), (4, 2)):
            pos = torch.arange(start, start + n)
            outs.append(mha(x[:, start : start + n], kv_cache=cache, is_causal=True,
                            rotary=rope(pos)).output)  # fmt: skip
        _unfused(monkeypatch)
        full = mha(x, is_causal=True, rotary=rope(torch.arange(6)))
    torch.testing.assert_close(torch.cat(outs, 1), full, **TOL)


def test_fused_weights_are_the_composition() -> None:
    """Rows ``[W_h; N_h^T W_h]`` and bias ``[b_h, b_h N_h]`` per head; no new state."""
    mha = _layer()
    w, b = mha.variant.fused_query(mha.q_proj.weight, mha.q_proj.bias)
    d = E // H
    wq, bq = mha.q_proj.weight.view(H, d, E), mha.q_proj.bias.view(H, d)
    n = mha.neg_weight
    want_w = torch.stack((wq, torch.einsum("hde,hdf->hfe", wq, n)), 1).reshape(2 * E, E)
    want_b = torch.stack((bq, torch.einsum("hd,hdf->hf", bq, n)), 1).reshape(2 * E)
    torch.testing.assert_close(w, want_w, **TOL)
    torch.testing.assert_close(b, want_b, **TOL)
    assert "neg_weight" in mha.state_dict() and len(mha.state_dict()) == 9


@pytest.mark.parametrize("neg_query", ["full", "negate", "relu_linear"])
def test_other_negative_queries_are_not_fused(neg_query) -> None:
    mha = _layer(neg_query=neg_query)
    assert mha.variant.fused_query(mha.q_proj.weight, mha.q_proj.bias) is None


@pytest.mark.parametrize("bias", [True, False])
def test_compose_query_gradcheck(bias: bool) -> None:
    """The hand-written backward of the composition (float64 gradcheck)."""
    from gpam.nn.fused_query import compose_query

    g = torch.Generator().manual_seed(1)
    h, d, e = 2, 3, 5
    w = torch.randn(h * d, e, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(h * d, dtype=torch.float64, generator=g, requires_grad=True) if bias else None
    n = torch.randn(h, d, d, dtype=torch.float64, generator=g, requires_grad=True)
    if bias:
        assert torch.autograd.gradcheck(lambda w, b, n: compose_query(w, b, n), (w, b, n))
    else:
        assert torch.autograd.gradcheck(lambda w, n: compose_query(w, None, n)[0], (w, n))


def test_composed_weight_is_kept_without_grad_while_parameters_are_unchanged(monkeypatch) -> None:
    """Without grad (decoding, evaluation) the composed query weight is built once and reused
    until a parameter it comes from changes (in place: an optimizer step, ``load_state_dict``;
    or replaced: ``.to()``); with grad it is built at every forward. Same outputs throughout."""
    mha = _layer()
    x = torch.randn(2, 4, mha.embed_dim, dtype=torch.float64)
    calls = []
    real = DagpamParams.fused_query

    def counting(self, w, b):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(self, w, b)

    full = mha(x, is_causal=True)
    monkeypatch.setattr(DagpamParams, "fused_query", counting)
    with torch.no_grad():
        cache = KVCache()
        steps = [mha(x[:, t : t + 1], is_causal=True, kv_cache=cache).output for t in range(4)]
        mha(x, is_causal=True)  # evaluation without a cache: the same weight
        assert len(calls) == 1
        torch.testing.assert_close(torch.cat(steps, 1), full, **TOL)
        mha.variant.neg_weight.mul_(0.5)  # as an optimizer step would, in place
        changed = mha(x, is_causal=True)
        assert len(calls) == 2
        mha.load_state_dict(mha.state_dict())  # copies in place: made anew, the same values
        torch.testing.assert_close(mha(x, is_causal=True), changed, **TOL)
        assert len(calls) == 3
        mha.float()
        mha(x.float(), is_causal=True)
        assert len(calls) == 4
    mha.double()
    with torch.inference_mode():
        mha(x, is_causal=True)
        mha(x, is_causal=True)
    assert len(calls) == 5
    with torch.no_grad():
        mha(x, is_causal=True)
    assert len(calls) == 6  # one made in inference mode is not reused outside it
    for _ in range(2):
        mha(x, is_causal=True).sum().backward()
    assert len(calls) == 8 and mha.__dict__["_fused_kept"] is None
    mha.requires_grad_(False)  # frozen (e.g. fine-tuning something else): kept with grad on
    mha(x, is_causal=True), mha(x, is_causal=True)
    assert len(calls) == 9
    assert "_fused_kept" not in pickle.loads(pickle.dumps(mha)).__dict__
    mha.requires_grad_(True)
    with torch.no_grad():
        monkeypatch.setattr(DagpamParams, "fused_query", real)
        fresh = _layer()
        fresh.load_state_dict(mha.state_dict())
        torch.testing.assert_close(mha(x, is_causal=True), fresh(x, is_causal=True), **TOL)
