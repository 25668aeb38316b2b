"""daGPAM's weights-first decoding step (``gpam.functional._decode``): one query row without
autograd, both maps' scores from one product and one value product of the mixed weights.

It must equal the float64 reference and the SDPA paths (masks with dead rows, per-head masks,
GQA, per-head and per-token lambdas, non-affine mixing, queries adjacent or not), run no SDPA
call where it applies, decline where it does not, and change nothing in
``gpam.MultiheadAttention`` decoding with self and cross caches.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import gpam
import gpam.functional._decode as dd
import gpam.functional.dagpam as dg
from decoding import layer_decoder
from gpam.functional import dagpam_attention
from reference import reference

CPU, NONE = frozenset({"cpu"}), frozenset()


@pytest.fixture
def few_scores(monkeypatch):
    """The step for every size (the default limit is for speed, not correctness)."""
    monkeypatch.setattr(dd, "DECODE_MIN_SCORES", 1)


def _queries(b: int, h: int, d: int, adjacent: bool, dtype=torch.float64, seed: int = 0):
    """``(q_pos, q_neg)`` (B, H, 1, D); ``adjacent``: laid out as the layer's one-GEMM query
    (per head the two rows side by side in one (B, 1, H, 2, D) buffer)."""
    g = torch.Generator().manual_seed(seed)
    buf = torch.randn(b, 1, h, 2, d, generator=g, dtype=dtype)
    q_pos, q_neg = buf.permute(3, 0, 2, 1, 4).unbind(0)
    return (q_pos, q_neg) if adjacent else (q_pos.clone(), q_neg.clone())


def _mask(kind: str, b: int, h: int, lk: int):
    if kind == "none":
        return None
    g = torch.Generator().manual_seed(3)
    heads = h if kind == "per_head" else 1
    keep = torch.rand(b, heads, 1, lk, generator=g) < 0.7
    keep[0] = False  # a dead row: no visible key
    if kind == "bool":
        return keep
    bias = torch.randn(b, heads, 1, lk, generator=g, dtype=torch.float64)
    return bias.masked_fill(~keep, float("-inf"))


def _sdpa_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(
        F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw)
    )
    return calls


@pytest.mark.parametrize("adjacent", [True, False])
@pytest.mark.parametrize("h_kv", [4, 2, 1])
@pytest.mark.parametrize("mask", ["none", "bool", "float", "per_head"])
@pytest.mark.parametrize(
    "lams",
    [
        {"lam_neg": 0.3},
        {"lam_neg": torch.tensor([0.0, 0.2, 0.7, 1.1], dtype=torch.float64)},
        {"lam_neg": torch.rand(3, 4, 1, 1, dtype=torch.float64), "lam_pos": 1.4, "affine": False},
        {
            "lam_neg": torch.rand(1, 4, 1, 1, dtype=torch.float64),
            "lam_pos": torch.tensor([1.0, 1.5, 2.0, 0.5], dtype=torch.float64),
            "affine": False,
        },
    ],
    ids=["fixed", "per_head", "per_token_free", "per_head_free"],
)
def test_step_matches_reference_and_sdpa_paths(monkeypatch, few_scores, adjacent, h_kv, mask, lams):
    b, h, lk, d = 3, 4, 6, 8
    q_pos, q_neg = _queries(b, h, d, adjacent, seed=h_kv)
    g = torch.Generator().manual_seed(5)
    k, v = (torch.randn(b, h_kv, lk, d, generator=g, dtype=torch.float64) for _ in range(2))
    m = _mask(mask, b, h, lk)
    calls = _sdpa_calls(monkeypatch)
    with torch.no_grad():
        step = dagpam_attention(q_pos, q_neg, k, v, attn_mask=m, **lams)
        assert not calls  # no SDPA call: the step ran
        monkeypatch.setattr(dd, "DECODE_DEVICES", NONE)
        sdpa = dagpam_attention(q_pos, q_neg, k, v, attn_mask=m, **lams)
        assert calls
    inputs = {"q_pos": q_pos, "q_neg": q_neg, "k": k, "v": v}
    want, _ = reference("dagpam", inputs, attn_mask=m, **lams)
    torch.testing.assert_close(step, want, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(step, sdpa, atol=1e-13, rtol=1e-12)
    if m is not None:
        assert step[0].abs().max() == 0  # the dead row stays exactly zero


def test_step_at_lambda_zero_is_softmax(few_scores):
    q_pos, q_neg = _queries(2, 4, 8, True)
    k, v = (torch.randn(2, 2, 5, 8, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        got = dagpam_attention(q_pos, q_neg, k, v, lam_neg=0.0)
    want = gpam.functional.softmax_attention(q_pos, k, v)
    torch.testing.assert_close(got, want, atol=1e-14, rtol=1e-13)


def test_step_float32_matches_sdpa_paths(monkeypatch, few_scores):
    q_pos, q_neg = _queries(4, 9, 16, True, dtype=torch.float32)
    k, v = torch.randn(4, 3, 40, 16), torch.randn(4, 3, 40, 16)
    with torch.no_grad():
        step = dagpam_attention(q_pos, q_neg, k, v, lam_neg=0.4)
        monkeypatch.setattr(dd, "DECODE_DEVICES", NONE)
        sdpa = dagpam_attention(q_pos, q_neg, k, v, lam_neg=0.4)
    torch.testing.assert_close(step, sdpa, atol=2e-6, rtol=1e-5)


def test_step_declines_where_it_does_not_apply(few_scores):
    q_pos, q_neg = _queries(2, 4, 8, True)
    k = torch.zeros(2, 4, 5, 8, dtype=torch.float64)

    def applies(qp=q_pos, qn=q_neg, kk=k, causal=False, p=0.0, lams=(None, 0.3), types=CPU):
        return dd.decode_step_applies(qp, qn, kk, kk, causal, p, lams, types)

    assert applies()
    assert not applies(causal=True)  # one row under the top-left causal rule: another op
    assert not applies(p=0.1)  # dropout draws stay those of two SDPA calls
    assert not applies(types=NONE)  # device type not opted in
    two = torch.zeros(2, 4, 2, 8, dtype=torch.float64)
    assert not applies(qp=two, qn=two)  # more than one query row
    low = q_pos.to(torch.bfloat16)
    assert not applies(qp=low, qn=low, kk=k.to(torch.bfloat16))  # SDPA keeps bf16 scores in fp32
    strided = torch.zeros(2, 5, 4, 8, dtype=torch.float64).transpose(1, 2)  # (B, Hkv, L, D) view
    assert not dd.batched(strided) and not applies(kk=strided)  # bmm would need a copy of K/V
    assert dd.batched(strided[:1]) and dd.batched(strided.contiguous())
    grad_k = k.clone().requires_grad_()
    assert not applies(kk=grad_k)  # autograd: the gradients stay SDPA's
    lam = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    assert not applies(lams=(None, lam))
    with torch.no_grad():
        assert applies(kk=grad_k) and applies(lams=(None, lam))


def test_step_needs_enough_scores():
    """Few scores: SDPA's per-call cost is small and the SDPA paths measured faster."""
    assert dd.DECODE_MIN_SCORES == 1152
    q_pos, q_neg = _queries(2, 4, 8, True)  # 2 x 4 query heads: 1152 scores at 144 keys
    few, enough = (torch.zeros(2, 4, n, 8, dtype=torch.float64) for n in (143, 144))
    with torch.no_grad():
        assert not dd.decode_step_applies(q_pos, q_neg, few, few, False, 0.0, (None, 0.3))
        assert dd.decode_step_applies(q_pos, q_neg, enough, enough, False, 0.0, (None, 0.3))


def test_adjacent_rows_is_a_view_and_declines_separate_buffers():
    q_pos, q_neg = _queries(3, 4, 8, True)
    both = dd.adjacent_rows(q_pos, q_neg)
    assert both is not None and both.shape == (3, 4, 2, 8)
    assert both.untyped_storage().data_ptr() == q_pos.untyped_storage().data_ptr()  # no copy
    assert torch.equal(both[:, :, :1], q_pos) and torch.equal(both[:, :, 1:], q_neg)
    assert dd.adjacent_rows(q_pos.clone(), q_neg.clone()) is None
    assert dd.adjacent_rows(q_neg, q_pos) is None  # wrong order


def test_static_cache_is_filled_contiguous():
    """A cross-attention cache is copied to one block per head once, so that every decoding
    step can take the step's bmm without copying K/V."""
    k = torch.randn(2, 7, 4, 8).transpose(1, 2)  # (B, Hkv, S, D) as a layer's projection leaves it
    cache = gpam.KVCache(static=True)
    got, _ = cache.update(k, k)
    assert got.is_contiguous() and torch.equal(got, k) and dd.batched(cache.k)


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_layer_decoding_with_step_equals_sdpa_paths(monkeypatch, few_scores, kv_heads):
    """Self-attention over a growing cache and cross-attention over a static one, with key
    padding, token by token under no_grad: the step is taken and changes nothing."""
    run = layer_decoder(kv_heads)
    taken = []
    real = dd.decode_step
    monkeypatch.setattr(dg, "decode_step", lambda *a: taken.append(1) or real(*a))
    stepped = run()
    assert len(taken) == 9  # every call but the first (no cache yet: causal, SDPA)
    monkeypatch.setattr(dd, "DECODE_DEVICES", NONE)
    torch.testing.assert_close(stepped, run(), atol=1e-13, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decoding_step_compiles_with_fullgraph(dtype):
    """Under ``torch.compile(fullgraph=True)`` a decoding step traces (the adjacency test reads
    pointers, which dynamo cannot: there the queries are joined by a copy): the weights-first
    step in float32, the SDPA paths in bf16 (at a size where the fold would apply eagerly)."""
    torch._dynamo.reset()
    q_pos, q_neg = _queries(64, 4, 16, True, dtype=dtype)
    k, v = (torch.randn(64, 4, 24, 16, dtype=dtype) for _ in range(2))  # 6144 key rows

    def op(a, b, c, d):
        return dagpam_attention(a, b, c, d, lam_neg=0.3)

    compiled = torch.compile(op, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(q_pos, q_neg, k, v), op(q_pos, q_neg, k, v))
