"""One mask rule for every variant: additive entries <= -8192 (``MASKED_AT_OR_BELOW``) are masked.

``-inf``, ``-1e9``, ``finfo(dtype).min`` and ``-1e4`` (in any float dtype) all mask a key exactly as
``False`` in a bool mask does: weight 0, and rows with no unmasked key give zeros. Checked
against the float64 reference of ``tests/reference.py`` given the equivalent ``-inf`` mask.
"""

from __future__ import annotations

import math

import pytest
import torch

import gpam
import gpam.functional as GF
from gpam.functional._checks import MASKED_AT_OR_BELOW
from reference import DEFAULT_KWARGS, make_inputs, reference

FILLS = {"-1e9": -1e9, "finfo.min": "min", "-1e4": -1e4}


def _masks(
    fill: object, dtype: torch.dtype, b: int = 2, lq: int = 5, lk: int = 7, bias: bool = True
):
    """(float mask with ``fill`` on masked entries, the same with -inf there, bool keep)."""
    g = torch.Generator().manual_seed(11)
    keep = torch.rand(b, 1, lq, lk, generator=g) < 0.6
    keep[..., 0] |= torch.rand(b, 1, lq, generator=g) < 0.5
    keep[0, 0, 3] = False  # a dead row
    bias = (torch.rand(b, 1, lq, lk, generator=g, dtype=torch.float64) * 2 - 1) * bias
    value = torch.finfo(dtype).min if fill == "min" else float(fill)
    mask = bias.to(dtype).masked_fill(~keep, value)
    return mask, bias.masked_fill(~keep, -math.inf), keep


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("fill", list(FILLS))
@pytest.mark.parametrize("variant", gpam.VARIANTS)
def test_very_negative_additive_mask_is_masked(variant, fill, causal):
    inputs = make_inputs(variant, 2, 2, 5, 7, 4, generator=torch.Generator().manual_seed(5))
    inputs = {n: t.requires_grad_() for n, t in inputs.items()}
    mask, inf_mask, keep = _masks(FILLS[fill], torch.float64)
    kw = {**DEFAULT_KWARGS[variant], "is_causal": causal}
    fn = getattr(GF, f"{variant}_attention")
    out, w = fn(*inputs.values(), attn_mask=mask, return_weights=True, **kw)
    fast = fn(*inputs.values(), attn_mask=mask, **kw)
    want_out, want_w = reference(variant, inputs, attn_mask=inf_mask, **kw)
    torch.testing.assert_close(w, want_w, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(out, want_out, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(fast, want_out, atol=1e-10, rtol=1e-9)
    assert (w.masked_select(~keep) == 0).all()
    assert (fast[0, :, 3] == 0).all() and (w[0, :, 3] == 0).all()  # the dead row
    grad = torch.randn_like(fast)
    got = torch.autograd.grad(fast, list(inputs.values()), grad)
    want = torch.autograd.grad(want_out, list(inputs.values()), grad)
    for name, a, b in zip(inputs, got, want):
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-8, msg=name)


@pytest.mark.parametrize("variant", gpam.VARIANTS)
def test_float32_inputs_with_finfo_min_and_bf16_masks(variant):
    """float32 inputs; masks in float32 (finfo.min) and bfloat16 (-1e4 rounds to -9984)."""
    inputs = make_inputs(variant, 2, 2, 5, 7, 4, generator=torch.Generator().manual_seed(6))
    fn = getattr(GF, f"{variant}_attention")
    kw = DEFAULT_KWARGS[variant]
    x32 = {n: t.float() for n, t in inputs.items()}
    want, _ = reference(variant, inputs, attn_mask=_masks("min", torch.float64)[1], **kw)
    for m in (_masks("min", torch.float32)[0], _masks(-1e4, torch.bfloat16)[0]):
        got = fn(*x32.values(), attn_mask=m, **kw)
        if m.dtype == torch.bfloat16:  # the finite bias itself is rounded to bf16
            want_b, _ = reference(
                variant, inputs, attn_mask=m.double().masked_fill(m <= -8192, -math.inf), **kw
            )
            torch.testing.assert_close(got.double(), want_b, atol=2e-5, rtol=1e-4)
        else:
            torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-4)


def test_threshold_is_exact():
    """-8192 masks (weight 0); -8191 is a (very negative) bias: CoDA's tanh saturates to -g."""
    assert MASKED_AT_OR_BELOW == -8192.0
    q, k, v = (torch.randn(1, 1, 2, 4, dtype=torch.float64) for _ in range(3))
    mask = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    mask[..., 1] = torch.tensor([-8192.0, -8191.0], dtype=torch.float64)
    _, w = GF.coda_attention(q, k, v, attn_mask=mask, return_weights=True)
    assert w[0, 0, 0, 1] == 0 and w[0, 0, 1, 1] < 0


def test_nan_mask_is_rejected_on_cpu():
    q = torch.randn(1, 1, 3, 4)
    mask = torch.zeros(3, 3)
    mask[1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        GF.softmax_attention(q, q, q, attn_mask=mask)
