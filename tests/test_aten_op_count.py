"""Aten-op overhead of daGPAM over softmax in a 2-layer LM (forward + backward), issue 19.

Counted with a ``TorchDispatchMode`` (every aten op the dispatcher runs, autograd's included),
so a change that adds copies, permutes or extra kernels per layer shows up here. Softmax with
the same model is the baseline; daGPAM's extra per layer must stay within :data:`LIMITS`.

Issue 19's target is +15 per layer with a fixed lambda and +25 per head; NOT reached yet. The
limits are what the code reaches (this model, CPU eager): before issue 19 +40 / +60 (softmax
306 ops, 338 with kv_heads=2 from the K/V copies); then +36 / +54, with GQA copy-free (softmax
306 with kv_heads=2 too); then +33 / +42: the composed query weight's backward reuses its forward
views (-3), a learnable lambda's clamp and affine mix have hand-written gradients and a clamped
lambda is not read back to check its sign (-9 per head); now +30 / +39: the one-GEMM query's
pairs of heads go to one SDPA call (``gpam.functional.dagpam.dagpam_pairs``; no second call and
backward, no K/V gradient sums, no stacking of two query gradients). What is left per layer
(fixed lambda): the pairs' layout (permute and view, and their backward: 2), the mix and its
backward (split of the output, lerp; two scalings and a stack backward: 7), and the composition
of the fused negative-query weight (``gpam.nn.fused_query``: 9 forward and 11 backward, the bias
part 9 of them, and the saved tensors' detaches: 3). Masks are not part of the difference (both
variants share them); they are built once per model forward, so a padding mask adds per layer
only the zeroing of dead rows (tested below; with padding the difference is +30 / +39 too, it
was +39 / +57).
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gpam.models import LMConfig, TransformerLM

LAYERS = 2
#: extra aten ops per layer over softmax, forward + backward: what the code reaches now
#: (issue 19's target, not reached: {"fixed": 15, "head": 25})
LIMITS = {"fixed": 30, "head": 39}


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.n += 1
        return func(*args, **(kwargs or {}))


@functools.cache
def count_ops(
    attention: str,
    lambda_mode: str = "fixed",
    kv_heads: int | None = None,
    layers: int = LAYERS,
    padding: bool = False,
) -> int:
    """Aten ops of one forward + backward of a tiny LM (dropout 0, float32, CPU); ``padding``:
    with a left-padding mask (one row's first two tokens)."""
    torch.manual_seed(0)
    cfg = LMConfig(
        vocab_size=32, d_model=32, n_layers=layers, n_heads=4, max_len=16, dropout=0.0,
        attention=attention, lambda_mode=lambda_mode, kv_heads=kv_heads,
    )  # fmt: skip
    model = TransformerLM(cfg)
    tokens = torch.randint(0, 32, (2, 8))
    pad = None
    if padding:
        pad = torch.zeros(2, 8, dtype=torch.bool)
        pad[0, :2] = True
    model(tokens, padding_mask=pad)  # warm-up: lazy caches (e.g. causal masks) are not counted
    with _Count() as counter:
        model(tokens, padding_mask=pad).float().logsumexp(-1).sum().backward()
    return counter.n


@pytest.mark.parametrize("kv_heads", [None, 2])
@pytest.mark.parametrize("mode", sorted(LIMITS))
def test_dagpam_op_overhead_per_layer(mode: str, kv_heads: int | None) -> None:
    base = count_ops("softmax", kv_heads=kv_heads)
    extra = (count_ops("dagpam", mode, kv_heads=kv_heads) - base) / LAYERS
    assert extra <= LIMITS[mode], (
        f"daGPAM ({mode} lambda, kv_heads={kv_heads}) adds {extra} aten ops per layer over "
        f"softmax (softmax: {base}); the limit is {LIMITS[mode]}"
    )


@pytest.mark.parametrize("attention", ["softmax", "dagpam"])
def test_grouped_kv_heads_cost_no_extra_ops(attention: str) -> None:
    """kv_heads=2 of 4 runs the same number of ops as kv_heads=4: no K/V copies, no gradient
    sums over repeated heads (SDPA's ``enable_gqa``)."""
    assert count_ops(attention, kv_heads=2) == count_ops(attention)


@pytest.mark.parametrize("attention", ["softmax", "dagpam"])
def test_padding_mask_costs_one_layer_only_its_dead_rows(attention: str) -> None:
    """The padding (and causal) mask is merged, validated, made additive for SDPA and its dead
    rows found once per model forward (``gpam.functional.PreparedMask``), not in every layer: a
    layer more costs, with a padding mask, only the zeroing of its dead rows more (``where``
    forward, ``where`` and its 0 backward: 3 ops; before, 19 for softmax and 22 for daGPAM)."""
    per_layer = count_ops(attention, layers=2) - count_ops(attention, layers=1)
    per_layer_padded = count_ops(attention, layers=2, padding=True) - count_ops(
        attention, layers=1, padding=True
    )
    assert per_layer_padded - per_layer <= 3
    assert count_ops(attention, padding=True) > count_ops(attention)  # the mask is counted
