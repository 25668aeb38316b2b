"""Known-answer tests of the rank-collapse measures and Dong et al.'s bound factor."""

from __future__ import annotations

import math

import pytest
import torch

from gpam.analysis import (
    bound_factor,
    composite_norm,
    head_betas,
    norm_1,
    norm_inf,
    relative_residual_composite,
    relative_residual_fro,
    residual,
    row_entropy,
    row_max,
)
from gpam.functional import softmax_attention
from gpam.nn import MultiheadAttention


def test_identical_tokens_have_zero_residual():
    row = torch.randn(1, 7, dtype=torch.float64)
    x = row.expand(5, 7).clone()
    assert torch.equal(residual(x), torch.zeros_like(x))
    assert relative_residual_fro(x).item() == 0.0
    assert relative_residual_composite(x).item() == 0.0


def test_all_zero_input_gives_zero_not_nan():
    x = torch.zeros(2, 4, 3)
    assert torch.equal(relative_residual_fro(x), torch.zeros(2))
    assert torch.equal(relative_residual_composite(x), torch.zeros(2))


def test_hand_computed_norms():
    a = torch.tensor([[1.0, -2.0], [3.0, 4.0]], dtype=torch.float64)
    assert norm_1(a).item() == 6.0  # column sums |1|+|3| = 4, |-2|+|4| = 6
    assert norm_inf(a).item() == 7.0  # row sums 3, 7
    assert composite_norm(a).item() == pytest.approx(math.sqrt(42.0))
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    # token mean (2, 3) -> residual [[-1, -1], [1, 1]]: ||res||_F = 2, ||X||_F = sqrt(30)
    assert torch.equal(residual(x), torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=torch.float64))
    assert relative_residual_fro(x).item() == pytest.approx(2.0 / math.sqrt(30.0))
    # ||res||_1 = 2, ||res||_inf = 2 -> 2; ||X||_1 = 6, ||X||_inf = 7 -> sqrt(42)
    assert relative_residual_composite(x).item() == pytest.approx(2.0 / math.sqrt(42.0))


def test_composite_norm_matches_explicit_formula():
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(4, 6, 5, generator=gen, dtype=torch.float64)
    got = composite_norm(a)
    for b in range(a.shape[0]):
        m = a[b].tolist()
        col = max(sum(abs(m[i][j]) for i in range(6)) for j in range(5))
        row = max(sum(abs(v) for v in m[i]) for i in range(6))
        assert got[b].item() == pytest.approx(math.sqrt(col * row), rel=1e-12)


def test_measures_are_scale_free_and_batched():
    x = torch.randn(3, 8, 4, dtype=torch.float64)
    assert relative_residual_fro(x).shape == (3,)
    torch.testing.assert_close(relative_residual_fro(5 * x), relative_residual_fro(x))
    torch.testing.assert_close(relative_residual_composite(5 * x), relative_residual_composite(x))
    # adding a common row changes X but not res(X)
    shifted = x + torch.randn(3, 1, 4, dtype=torch.float64)
    torch.testing.assert_close(residual(shifted), residual(x))


def test_identity_attention_map_leaves_residual_unchanged():
    x = torch.randn(2, 1, 6, 4, dtype=torch.float64)  # (B, H, L, D): tokens are the values
    eye = torch.eye(6, dtype=torch.bool)  # keep only the diagonal -> W = I
    out, w = softmax_attention(x, x, x, attn_mask=eye, return_weights=True)
    torch.testing.assert_close(w, torch.eye(6, dtype=torch.float64).expand_as(w))
    torch.testing.assert_close(relative_residual_fro(out), relative_residual_fro(x))
    torch.testing.assert_close(relative_residual_composite(out), relative_residual_composite(x))


def test_uniform_softmax_layer_collapses_to_zero_residual():
    torch.manual_seed(1)
    mha = MultiheadAttention(8, 2, attention="softmax", dtype=torch.float64)
    with torch.no_grad():  # zero queries -> all logits 0 -> uniform rows -> identical outputs
        mha.q_proj.weight.zero_()
        mha.q_proj.bias.zero_()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    assert relative_residual_fro(x).min() > 0.5
    out = mha(x)
    assert relative_residual_fro(out).max() < 1e-13
    assert relative_residual_composite(out).max() < 1e-13


def test_entropy_and_row_max_known_values():
    uniform = torch.full((1, 1, 3, 4), 0.25)
    assert row_entropy(uniform).item() == pytest.approx(math.log(4))
    one_hot = torch.eye(4).view(1, 1, 4, 4)
    assert row_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-9)
    assert row_max(uniform).item() == 0.25
    assert row_max(one_hot).item() == 1.0


def test_bound_factor_single_head_matches_formula():
    torch.manual_seed(2)
    e = 6
    mha = MultiheadAttention(e, 1, attention="softmax", bias=False, dtype=torch.float64)
    wq, wk = mha.q_proj.weight.detach(), mha.k_proj.weight.detach()
    wv, wo = mha.v_proj.weight.detach(), mha.out_proj.weight.detach()
    w_qk = wq.T @ wk  # Dong et al.'s X W_Q W_K^T X^T with q = x Wq^T
    w_vo = wv.T @ wo.T
    col = w_qk.abs().sum(0).max()
    comp = torch.sqrt(w_vo.abs().sum(0).max() * w_vo.abs().sum(1).max())
    torch.testing.assert_close(head_betas(mha), (col * comp).view(1))
    assert bound_factor(mha, gamma=2.0) == pytest.approx(4 * 2.0 * float(col * comp) / math.sqrt(e))
    with pytest.raises(ValueError, match="gamma"):
        bound_factor(mha, gamma=0.0)


def test_measures_reject_bad_input():
    with pytest.raises(TypeError, match="x"):
        residual([[1.0]])
    with pytest.raises(ValueError, match="x"):
        residual(torch.ones(3))
