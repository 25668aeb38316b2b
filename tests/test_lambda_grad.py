"""Hand-written gradients of the lambda maths (``gpam.functional._lambda_grad``): the same bits
as the autograd forms they replace, with fewer ops per layer (issue 19)."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import gpam.functional as GF
from gpam.functional._lambda_grad import clamp_nonnegative, made_nonnegative
from gpam.functional.lambdas import affine_mix


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_clamp_nonnegative_is_the_straight_through_clamp(dtype: torch.dtype) -> None:
    raw = torch.tensor([-0.7, -0.0, 0.0, 1e-30, 0.3, 2.5], dtype=dtype, requires_grad=True)
    want = raw + (raw.clamp_min(0.0) - raw).detach()
    got = clamp_nonnegative(raw)
    assert torch.equal(got, want) and (got >= 0).all()
    g = torch.randn(6, dtype=dtype)
    (g_got,) = torch.autograd.grad(got, raw, g)
    (g_want,) = torch.autograd.grad(want, raw, g)
    assert torch.equal(g_got, g_want) and torch.equal(g_got, g)
    assert made_nonnegative(got) and not made_nonnegative(want) and not made_nonnegative(raw)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("lam_shape", [(1, 3, 1, 1), (2, 3, 5, 1), ()])
def test_affine_mix_matches_lerp_bit_for_bit(lam_shape: tuple, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    pos, neg = (torch.randn(2, 3, 5, 4, generator=g, dtype=dtype, requires_grad=True) for _ in "pn")
    lam = (torch.rand(lam_shape, generator=g, dtype=dtype) * 0.8).requires_grad_()
    want = torch.lerp(pos, neg, -lam)
    got = affine_mix(pos, neg, lam)
    assert torch.equal(got, want)
    grad = torch.randn(want.shape, generator=g, dtype=dtype)
    g_want = torch.autograd.grad(want, (pos, neg, lam), grad)
    g_got = torch.autograd.grad(got, (pos, neg, lam), grad)
    for a, b in zip(g_got, g_want):
        assert a.shape == b.shape and torch.equal(a, b)


def test_affine_mix_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    args = [torch.randn(2, 3, 4, 2, generator=g, dtype=torch.float64) for _ in "pn"]
    lam = torch.rand(1, 3, 1, 1, generator=g, dtype=torch.float64)
    args = [a.requires_grad_() for a in (*args, lam)]
    assert torch.autograd.gradcheck(affine_mix, args)


class _Reads(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.reads += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


def test_clamped_lambda_is_not_read_back_but_a_negative_one_is_refused() -> None:
    q, qn, k, v = (torch.randn(1, 2, 4, 8) for _ in range(4))
    raw = torch.tensor([-0.3, 0.4], requires_grad=True)
    with _Reads() as mode:
        GF.dagpam_attention(q, qn, k, v, lam_neg=clamp_nonnegative(raw))
    assert mode.reads == 0  # >= 0 by construction: no device-to-host read of its sign
    with _Reads() as mode, pytest.raises(ValueError, match="lam_neg must be >= 0"):
        GF.dagpam_attention(q, qn, k, v, lam_neg=raw * 1.0)
    assert mode.reads == 1


def test_clamp_without_autograd_is_marked_and_not_read_back() -> None:
    """Decoding (no grad) takes a plain clamp_min, marked so the op skips the sign check; a
    tensor that was not made by the clamp is still looked at."""
    raw = torch.tensor([-0.3, 0.4], requires_grad=True)
    q, qn, k, v = (torch.randn(1, 2, 1, 8) for _ in range(4))
    with torch.no_grad():
        lam = clamp_nonnegative(raw)
        assert lam.grad_fn is None and made_nonnegative(lam)
        assert torch.equal(lam, torch.tensor([0.0, 0.4]))
        with _Reads() as mode:
            GF.dagpam_attention(q, qn, k, v, lam_neg=lam)
        assert mode.reads == 0
        assert not made_nonnegative(lam * 1.0) and not made_nonnegative(lam.view(2))
        with _Reads() as mode, pytest.raises(ValueError, match="lam_neg must be >= 0"):
            GF.dagpam_attention(q, qn, k, v, lam_neg=raw * 1.0)
        assert mode.reads == 1
    plain = clamp_nonnegative(torch.tensor([-1.0, 2.0]))  # needs no gradient: plain clamp too
    assert plain.grad_fn is None and made_nonnegative(plain)
