"""Bad input raises ValueError/TypeError whose message names the offending argument."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import gpam
import gpam.functional as GF


def qkv(b=2, h=2, lq=4, lk=5, d=3, h_kv=None, dtype=torch.float32) -> tuple[Tensor, ...]:
    h_kv = h if h_kv is None else h_kv
    return (
        torch.randn(b, h, lq, d, dtype=dtype),
        torch.randn(b, h_kv, lk, d, dtype=dtype),
        torch.randn(b, h_kv, lk, d, dtype=dtype),
    )


SINGLE = ["softmax", "cog", "coda", "sigmoid", "centered"]


def call(variant: str, q: Tensor, k: Tensor, v: Tensor, **kw: object):
    if variant == "dagpam":
        return GF.dagpam_attention(q, q.clone(), k, v, **kw)
    if variant == "diff2":  # each query head doubled: (positive, negative) pairs
        return GF.diff2_attention(q.repeat_interleave(2, dim=1), k, v, lam=0.5, **kw)
    return getattr(GF, f"{variant}_attention")(q, k, v, **kw)


@pytest.mark.parametrize("variant", [*SINGLE, "dagpam", "diff2"])
def test_wrong_rank(variant: str) -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"\bq(_pos)?\b|query"):
        call(variant, q[0], k, v)
    with pytest.raises(ValueError, match=r"\bk\b|key"):
        call(variant, q, k[0], v)
    with pytest.raises(ValueError, match=r"\bv\b|value"):
        call(variant, q, k, v.unsqueeze(0))


@pytest.mark.parametrize("variant", [*SINGLE, "dagpam", "diff2"])
def test_mismatched_sizes(variant: str) -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"head_dim|\bk\b|key"):  # q / k head_dim differ
        call(variant, q, torch.randn(2, 2, 5, 4), v)
    with pytest.raises(ValueError, match=r"\bv\b|value"):  # k / v lengths differ
        call(variant, q, k, torch.randn(2, 2, 6, 3))
    with pytest.raises(ValueError, match=r"batch|\bk\b|key"):
        call(variant, q, torch.randn(3, 2, 5, 3), torch.randn(3, 2, 5, 3))
    # key/value heads must divide the query heads (grouped-query attention)
    q3, k2, v2 = qkv(h=3, h_kv=2)
    with pytest.raises(ValueError, match=r"head"):
        call(variant, q3, k2, v2)


def test_dagpam_queries_must_match() -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"q_neg"):
        GF.dagpam_attention(q, q[:, :, :3], k, v)
    with pytest.raises(TypeError, match=r"q_neg|dtype"):
        GF.dagpam_attention(q, q.double(), k, v)


@pytest.mark.parametrize("variant", [*SINGLE, "dagpam", "diff2"])
def test_mismatched_dtypes(variant: str) -> None:
    q, k, v = qkv()
    with pytest.raises(TypeError, match=r"dtype"):
        call(variant, q, k.double(), v)
    with pytest.raises(TypeError, match=r"dtype"):
        call(variant, q, k, v.double())


@pytest.mark.parametrize("variant", [*SINGLE, "dagpam", "diff2"])
def test_integer_mask_rejected(variant: str) -> None:
    q, k, v = qkv()
    with pytest.raises(TypeError, match=r"attn_mask"):
        call(variant, q, k, v, attn_mask=torch.ones(4, 5, dtype=torch.int64))


@pytest.mark.parametrize("variant", [*SINGLE, "dagpam", "diff2"])
def test_mask_not_broadcastable(variant: str) -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"attn_mask"):
        call(variant, q, k, v, attn_mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"attn_mask"):
        call(variant, q, k, v, attn_mask=torch.ones(3, 1, 4, 5, dtype=torch.bool))


def test_lambda_errors() -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"lam_neg"):
        GF.dagpam_attention(q, q, k, v, lam_neg=-0.1)
    with pytest.raises(ValueError, match=r"lam_neg"):
        GF.dagpam_attention(q, q, k, v, lam_neg=torch.tensor([0.2, -0.3]))
    with pytest.raises(ValueError, match=r"lam_pos"):
        GF.dagpam_attention(q, q, k, v, lam_pos=1.5, lam_neg=0.5)  # affine=True fixes lam_pos
    with pytest.raises(ValueError, match=r"lam_pos"):
        GF.dagpam_attention(q, q, k, v, lam_neg=0.5, affine=False)  # lam_pos required


def test_dropout_p_range() -> None:
    q, k, v = qkv()
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"dropout_p"):
            GF.softmax_attention(q, k, v, dropout_p=p)
        with pytest.raises(ValueError, match=r"dropout_p"):
            GF.dagpam_attention(q, q, k, v, dropout_p=p)


def test_unknown_variant() -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"nosuch") as info:
        GF.attention("nosuch", q, k, v)
    assert "dagpam" in str(info.value)  # lists the valid names
    with pytest.raises(ValueError, match=r"q_neg"):
        GF.attention("dagpam", q, k, v)  # daGPAM needs its negative query


def test_multihead_constructor_errors() -> None:
    with pytest.raises(ValueError, match=r"embed_dim|num_heads"):
        gpam.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match=r"attention"):
        gpam.MultiheadAttention(8, 2, attention="nosuch")
    with pytest.raises(ValueError, match=r"neg_query"):
        gpam.MultiheadAttention(8, 2, neg_query="nosuch")
    with pytest.raises(ValueError, match=r"kv_heads"):
        gpam.MultiheadAttention(12, 4, kv_heads=3)
    with pytest.raises(ValueError, match=r"lam_neg"):
        gpam.MultiheadAttention(8, 2, lam_neg=-0.5)
    with pytest.raises(ValueError, match=r"lam_pos"):
        gpam.MultiheadAttention(8, 2, lam_pos=1.5)  # affine=True by default
    with pytest.raises(ValueError, match=r"dropout"):
        gpam.MultiheadAttention(8, 2, dropout=1.5)
    with pytest.raises(ValueError, match=r"num_heads"):  # diff pairs heads: needs an even count
        gpam.MultiheadAttention(12, 3, attention="diff")


def test_multihead_forward_errors() -> None:
    mha = gpam.MultiheadAttention(8, 2)
    x = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match=r"query"):
        mha(x[0])
    with pytest.raises(ValueError, match=r"query|embed_dim"):
        mha(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match=r"key_padding_mask"):
        mha(x, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"key_padding_mask"):
        mha(x, key_padding_mask=torch.zeros(2, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"attn_mask"):
        mha(x, attn_mask=torch.ones(5, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"key|value"):
        mha(x, torch.randn(2, 6, 8), torch.randn(2, 7, 8))
