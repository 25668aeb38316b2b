"""KV cache: incremental decoding equals full recomputation (self, GQA, cross), and reorder."""

from __future__ import annotations

import pytest
import torch

import gpam
from gpam.nn import KVCache

E, H = 12, 3


def dims(attention: str) -> tuple[int, int]:
    return (16, 4) if attention == "diff" else (E, H)


def decode(mha, x: torch.Tensor, chunks: list[int], **kw: object) -> torch.Tensor:
    """Feed ``x`` (B, T, E) in chunks through a fresh cache; concatenated outputs (B, T, E)."""
    cache = KVCache()
    outs, start = [], 0
    for n in chunks:
        out, _, cache = mha(x[:, start : start + n], kv_cache=cache, is_causal=True, **kw)
        outs.append(out)
        start += n
    assert start == x.shape[1]
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("attention", list(gpam.VARIANTS))
def test_token_by_token_equals_full(attention: str) -> None:
    e, h = dims(attention)
    mha = gpam.MultiheadAttention(e, h, attention=attention).double().eval()
    x = torch.randn(2, 7, e, dtype=torch.float64)
    full = mha(x, is_causal=True)
    torch.testing.assert_close(decode(mha, x, [1] * 7), full)


@pytest.mark.parametrize(
    "attention", ["softmax", "dagpam", "diff", "coda", "sigmoid", "diff2", "centered"]
)
def test_several_tokens_per_step(attention: str) -> None:
    e, h = dims(attention)
    mha = gpam.MultiheadAttention(e, h, attention=attention).double().eval()
    x = torch.randn(2, 9, e, dtype=torch.float64)
    full = mha(x, is_causal=True)
    torch.testing.assert_close(decode(mha, x, [4, 1, 3, 1]), full)


def test_single_token_without_causal_flag_sees_all_past() -> None:
    mha = gpam.MultiheadAttention(E, H).double().eval()
    x = torch.randn(2, 5, E, dtype=torch.float64)
    full = mha(x, is_causal=True)
    cache = KVCache()
    _, _, cache = mha(x[:, :4], kv_cache=cache, is_causal=True)
    last, _, cache = mha(x[:, 4:], kv_cache=cache)
    torch.testing.assert_close(last, full[:, 4:])


@pytest.mark.parametrize("neg_query", ["linear", "full", "negate"])
def test_gqa_and_neg_query_decoding(neg_query: str) -> None:
    mha = gpam.MultiheadAttention(16, 4, kv_heads=2, neg_query=neg_query).double().eval()
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    full = mha(x, is_causal=True)
    torch.testing.assert_close(decode(mha, x, [2, 1, 1, 2]), full)


def test_learnable_lambda_decoding() -> None:
    mha = gpam.MultiheadAttention(E, H, learnable_lambda=True, lam_neg=0.8).double().eval()
    x = torch.randn(2, 5, E, dtype=torch.float64)
    torch.testing.assert_close(decode(mha, x, [1] * 5), mha(x, is_causal=True))


def test_key_padding_with_cache() -> None:
    """Left padding of the prompt is remembered by the cache (True = padding over all keys)."""
    mha = gpam.MultiheadAttention(E, H).double().eval()
    x = torch.randn(2, 6, E, dtype=torch.float64)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, :2] = True
    full = mha(x, is_causal=True, key_padding_mask=pad)
    cache = KVCache()
    out1, _, cache = mha(x[:, :4], kv_cache=cache, is_causal=True, key_padding_mask=pad[:, :4])
    out2, _, cache = mha(x[:, 4:], kv_cache=cache, is_causal=True, key_padding_mask=pad)
    torch.testing.assert_close(out1[:, 2:], full[:, 2:4])
    torch.testing.assert_close(out2, full[:, 4:])


@pytest.mark.parametrize("attention", ["softmax", "dagpam", "sigmoid"])
def test_static_cross_attention_cache(attention: str) -> None:
    mha = gpam.MultiheadAttention(E, H, attention=attention).double().eval()
    tgt = torch.randn(2, 5, E, dtype=torch.float64)
    mem = torch.randn(2, 8, E, dtype=torch.float64)
    pad = torch.zeros(2, 8, dtype=torch.bool)
    pad[0, 6:] = True
    full = mha(tgt, mem, key_padding_mask=pad)
    cache = KVCache(static=True)
    outs = []
    for t in range(5):
        key = mem if t == 0 else None
        out, _, cache = mha(tgt[:, t : t + 1], key, key, key_padding_mask=pad, kv_cache=cache)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), full)
    # Later calls ignore key/value: passing different memory does not change the result.
    other = torch.randn(2, 8, E, dtype=torch.float64)
    out_again, _, _ = mha(tgt[:, :1], other, other, key_padding_mask=pad, kv_cache=cache)
    torch.testing.assert_close(out_again, full[:, :1])


def test_reorder_for_beam_search() -> None:
    mha = gpam.MultiheadAttention(E, H).double().eval()
    x = torch.randn(3, 6, E, dtype=torch.float64)
    cache = KVCache()
    _, _, cache = mha(x[:, :4], kv_cache=cache, is_causal=True)
    index = torch.tensor([2, 0, 0])
    cache.reorder(index)
    new = torch.randn(3, 2, E, dtype=torch.float64)
    out, _, cache = mha(new, kv_cache=cache, is_causal=True)
    seq = torch.cat([x[index, :4], new], dim=1)
    torch.testing.assert_close(out, mha(seq, is_causal=True)[:, 4:])


def test_cache_grows() -> None:
    mha = gpam.MultiheadAttention(E, H).eval()
    x = torch.randn(2, 5, E)
    cache = KVCache()
    _, _, cache = mha(x[:, :3], kv_cache=cache, is_causal=True)
    _, _, cache = mha(x[:, 3:], kv_cache=cache, is_causal=True)
    assert cache.length == 5
    assert cache.k.shape == (2, H, 5, E // H) and cache.v.shape == cache.k.shape


@pytest.mark.parametrize("attention", ["softmax", "dagpam"])
def test_rotary_decoding_equals_full(attention: str) -> None:
    """Rotary tables for the new positions only; cached keys keep their rotation."""
    from gpam.nn import RotaryEmbedding

    mha = gpam.MultiheadAttention(E, H, attention=attention).double().eval()
    rope = RotaryEmbedding(E // H)
    x = torch.randn(2, 6, E, dtype=torch.float64)
    full = mha(x, is_causal=True, rotary=rope(torch.arange(6)))
    assert not torch.allclose(full, mha(x, is_causal=True))  # rotary changes the result
    cache, outs = KVCache(), []
    for start, n in ((0, 3), (3, 1), (4, 2)):
        pos = torch.arange(start, start + n)
        out, _, cache = mha(
            x[:, start : start + n], kv_cache=cache, is_causal=True, rotary=rope(pos)
        )
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), full)
