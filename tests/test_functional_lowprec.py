"""daGPAM in bf16 combines its two maps with lambda at lambda's own precision (issue 20 item 6).

``lerp(o_neg, o_pos, 1 + lam_neg)`` rounded ``1 + lam_neg`` to bf16's spacing near 1 (2^-7):
lam_neg 0.302, 0.304 and 0.306 gave bit-identical outputs and lam_neg <= 0.003 gave exactly the
lam_neg = 0 output. ``lerp(o_pos, o_neg, -lam_neg)`` keeps the affine form, is exact at 0 and
keeps small lambdas apart.
"""

from __future__ import annotations

import pytest
import torch

import gpam
import gpam.functional as GF


def _qkv(dtype: torch.dtype) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 3, 6, 8, generator=g).to(dtype) for _ in range(4)]


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("lams", [(0.302, 0.304, 0.306), (0.001, 0.002, 0.003)])
def test_distinct_small_tensor_lambdas_give_distinct_bf16_outputs(lams, weights) -> None:
    q, qn, k, v = _qkv(torch.bfloat16)
    outs = []
    for lam in (0.0, *lams):
        lam_t = torch.full((3,), lam)  # a per-head (learnable-style) lambda tensor
        res = GF.dagpam_attention(q, qn, k, v, lam_neg=lam_t, return_weights=weights)
        outs.append(res[0] if weights else res)
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert not torch.equal(outs[i], outs[j]), (i, j)


def test_zero_lambda_tensor_is_exactly_softmax_in_bf16() -> None:
    q, qn, k, v = _qkv(torch.bfloat16)
    out = GF.dagpam_attention(q, qn, k, v, lam_neg=torch.zeros(3))
    assert torch.equal(out, GF.softmax_attention(q, k, v))


def test_bf16_stays_close_to_float64() -> None:
    q, qn, k, v = _qkv(torch.float64)
    lam = torch.tensor([0.003, 0.3, 1.2], dtype=torch.float64)
    want = GF.dagpam_attention(q, qn, k, v, lam_neg=lam)
    low = [t.to(torch.bfloat16) for t in (q, qn, k, v)]
    got = GF.dagpam_attention(*low, lam_neg=lam.float()).double()
    torch.testing.assert_close(got, want, atol=3e-2, rtol=3e-2)


def test_learnable_lambdas_are_float32_at_least_and_never_below_the_layer() -> None:
    """Issue 20 item 9: a float64 layer kept its learnable lambdas in float32."""
    for mode in ("head", "token"):
        mha = gpam.MultiheadAttention(8, 2, lambda_mode=mode, dtype=torch.float64)
        lams = [p for n, p in mha.named_parameters() if "lam" in n]
        assert lams and all(p.dtype == torch.float64 for p in lams), mode
        half = gpam.MultiheadAttention(8, 2, lambda_mode=mode, dtype=torch.bfloat16)
        assert all(p.dtype == torch.float32 for n, p in half.named_parameters() if "lam" in n)
        assert mha.variant.neg_weight.dtype == torch.float64
