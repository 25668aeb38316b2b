"""daGPAM's decoding-step fold: one SDPA call over a query row and its negative query (where
the weights-first step, ``gpam.functional._decode``, does not apply: bf16/fp16 on CPU).

``folded_query`` must give a copy-free view only where both rows see the same keys, no gradient
is needed and the keys are many enough (``FOLD_MIN_KEY_ROWS``, lowered here for small shapes),
and the folded path must equal the float64 reference and the two-call path (masks with dead
rows, GQA, per-head and per-token lambdas, non-affine mixing), in the functional op and in
``gpam.MultiheadAttention`` decoding with self and cross caches.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import gpam.functional._decode as dd
import gpam.functional.dagpam as dg
from decoding import layer_decoder
from reference import reference

CPU, NONE = frozenset({"cpu"}), frozenset()
K = torch.zeros(1, 1, 8, 8)  # keys of 8 rows


@pytest.fixture(autouse=True)
def _small_keys_fold(monkeypatch):
    monkeypatch.setattr(dg, "FOLD_MIN_KEY_ROWS", 1)
    # the weights-first step (tests/test_functional_decode_step.py) comes first where it
    # applies; off here, so that these sizes test the fold whatever its limit
    monkeypatch.setattr(dd, "DECODE_DEVICES", frozenset())


def _adjacent(b: int, h: int, d: int, dtype=torch.float64, seed: int = 0):
    """``(q_pos, q_neg)`` (B, H, 1, D) laid out as the layer's one-GEMM query: per head the two
    rows side by side in one buffer (B, 1, H, 2, D)."""
    g = torch.Generator().manual_seed(seed)
    buf = torch.randn(b, 1, h, 2, d, generator=g, dtype=dtype)
    q_pos, q_neg = buf.permute(3, 0, 2, 1, 4).unbind(0)
    return q_pos, q_neg


def test_folded_query_is_a_view_of_the_adjacent_rows():
    q_pos, q_neg = _adjacent(3, 4, 8)
    both = dg.folded_query(q_pos, q_neg, K, None, False, 0.0, CPU)
    assert both is not None and both.shape == (3, 4, 2, 8)
    assert both.untyped_storage().data_ptr() == q_pos.untyped_storage().data_ptr()  # no copy
    torch.testing.assert_close(both[:, :, :1], q_pos, rtol=0, atol=0)
    torch.testing.assert_close(both[:, :, 1:], q_neg, rtol=0, atol=0)


def test_folded_query_declines_where_rows_would_differ_or_need_a_copy():
    q_pos, q_neg = _adjacent(2, 4, 8)

    def fold(*args):
        return dg.folded_query(args[0], args[1], K, *args[2:])

    assert fold(q_pos, q_neg, None, True, 0.0, CPU) is None  # causal flag
    assert fold(q_pos, q_neg, None, False, 0.1, CPU) is None  # dropout draws
    assert fold(q_pos, q_neg, None, False, 0.0, NONE) is None  # device type not opted in
    assert fold(q_pos, q_neg, torch.ones(2, 1, 2, 5, dtype=torch.bool), False, 0.0, CPU) is None
    assert fold(q_pos, q_neg, torch.ones(2, 1, 1, 5, dtype=torch.bool), False, 0.0, CPU) is not None
    assert fold(q_pos.clone(), q_neg.clone(), None, False, 0.0, CPU) is None  # separate buffers
    assert fold(q_neg, q_pos, None, False, 0.0, CPU) is None  # wrong order
    two = torch.randn(2, 4, 2, 8, dtype=torch.float64)
    assert fold(two, two, None, False, 0.0, CPU) is None  # more than one query row
    grad_pos, grad_neg = (t.requires_grad_() for t in _adjacent(2, 4, 8, seed=1))
    assert fold(grad_pos, grad_neg, None, False, 0.0, CPU) is None  # autograd
    with torch.no_grad():
        assert fold(grad_pos, grad_neg, None, False, 0.0, CPU) is not None


def test_folded_query_needs_enough_key_rows(monkeypatch):
    """Few keys: two one-row calls measured faster than one two-row call (the default limit)."""
    q_pos, q_neg = _adjacent(2, 4, 8)
    monkeypatch.setattr(dg, "FOLD_MIN_KEY_ROWS", 2048)
    few, enough = torch.zeros(2, 4, 255, 8), torch.zeros(2, 4, 256, 8)  # 2040 and 2048 rows
    assert dg.folded_query(q_pos, q_neg, few, None, False, 0.0, CPU) is None
    assert dg.folded_query(q_pos, q_neg, enough, None, False, 0.0, CPU) is not None


def _mask(kind: str, b: int, lk: int):
    if kind == "none":
        return None
    g = torch.Generator().manual_seed(3)
    keep = torch.rand(b, 1, 1, lk, generator=g) < 0.7
    keep[0] = False  # a dead row: no visible key
    if kind == "bool":
        return keep
    bias = torch.randn(b, 1, 1, lk, generator=g, dtype=torch.float64)
    return bias.masked_fill(~keep, float("-inf"))


@pytest.mark.parametrize("h_kv", [4, 2, 1])
@pytest.mark.parametrize("mask", ["none", "bool", "float"])
@pytest.mark.parametrize(
    "lams",
    [
        {"lam_neg": 0.3},
        {"lam_neg": torch.tensor([0.0, 0.2, 0.7, 1.1], dtype=torch.float64)},
        {"lam_neg": torch.rand(3, 4, 1, 1, dtype=torch.float64), "lam_pos": 1.4, "affine": False},
    ],
    ids=["fixed", "per_head", "per_token_free"],
)
def test_fold_matches_reference_and_two_calls(monkeypatch, h_kv, mask, lams):
    b, h, lk, d = 3, 4, 6, 8
    q_pos, q_neg = _adjacent(b, h, d, seed=h_kv)
    g = torch.Generator().manual_seed(5)
    k, v = (torch.randn(b, h_kv, lk, d, generator=g, dtype=torch.float64) for _ in range(2))
    m = _mask(mask, b, lk)
    assert dg.folded_query(q_pos, q_neg, k, m, False, 0.0) is not None  # the default takes it
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(
        F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw)
    )
    folded = dg.dagpam_attention(q_pos, q_neg, k, v, attn_mask=m, **lams)
    assert len(calls) == 1  # one SDPA call for both maps
    monkeypatch.setattr(dg, "FOLD_DEVICES", NONE)
    two = dg.dagpam_attention(q_pos, q_neg, k, v, attn_mask=m, **lams)
    assert len(calls) == 3
    inputs = {"q_pos": q_pos, "q_neg": q_neg, "k": k, "v": v}
    want, _ = reference("dagpam", inputs, attn_mask=m, **lams)
    torch.testing.assert_close(folded, want, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(folded, two, atol=1e-13, rtol=1e-12)
    if m is not None:
        assert folded[0].abs().max() == 0  # the dead row stays exactly zero


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_layer_decoding_with_fold_equals_two_calls(monkeypatch, kv_heads):
    """Self-attention over a growing cache and cross-attention over a static one, with key
    padding, token by token under no_grad: the fold is taken and changes nothing."""
    run = layer_decoder(kv_heads)
    folds = []
    real = dg.folded_query
    monkeypatch.setattr(
        dg, "folded_query", lambda *a: folds.append(real(*a) is not None) or real(*a)
    )
    folded = run()
    assert folds and all(folds[1:])  # the first step (no cache yet) is causal: two calls
    monkeypatch.setattr(dg, "FOLD_DEVICES", NONE)
    torch.testing.assert_close(folded, run(), atol=1e-13, rtol=1e-12)
