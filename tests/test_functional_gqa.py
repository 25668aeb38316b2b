"""Grouped-query attention without K/V copies (issue 19, item 2).

Every variant with Hkv < H key/value heads must give what the same op gives with K/V repeated to
H heads (the old ``expand_kv`` path, kept for torch < 2.5), outputs and gradients to round-off in
float64, with masks, padding (a dead row included), causality, weights and dropout off.
"""

from __future__ import annotations

import pytest
import torch

import gpam.functional._gqa as gqa_mod
from gpam.functional._checks import expand_kv
from gpam.functional.diff import diff_attention
from gpam.functional.registry import VARIANTS, variant

B, H, HKV, L, S, D = 2, 4, 2, 5, 6, 4


def _masks() -> dict[str, tuple[torch.Tensor | None, bool]]:
    pad = torch.ones(B, 1, 1, S, dtype=torch.bool)
    pad[1, ..., 3:] = False
    dead = torch.ones(B, 1, L, S, dtype=torch.bool)
    dead[0, 0, 2] = False  # a row that sees no key
    per_head = torch.rand(B, H, L, S, generator=torch.Generator().manual_seed(3)) > 0.3
    per_head[..., 0] = True
    additive = torch.zeros(L, S, dtype=torch.float64)
    additive[:, -1] = -1e4
    return {
        "none": (None, False), "causal": (None, True), "padding": (pad, False),
        "padding_causal": (pad, True), "dead_row": (dead, False), "per_head": (per_head, False),
        "additive": (additive, False),
    }  # fmt: skip


def _run(name: str, q, qn, k, v, expand: bool, mask, causal: bool, weights: bool):  # type: ignore[no-untyped-def]
    kw = {"attn_mask": mask, "is_causal": causal, "return_weights": weights}
    if name == "diff":  # explicit pairs; values of width 2D (Ye et al.'s layout)
        v2 = torch.cat((v, v.flip(-2)), dim=-1)
        if expand:
            k, v2 = expand_kv(k, H), expand_kv(v2, H)
        return diff_attention(q, qn, k, k.flip(-1), v2, lam=0.3, **kw)
    entry = variant(name)
    (q_, k_, v_), extra = entry.example(q, qn, k, v, 0.4)
    if expand:
        heads = q_.shape[1] // (2 if name == "diff2" else 1)
        k_, v_ = expand_kv(k_, heads), expand_kv(v_, heads)
    return entry.op(q_, k_, v_, **extra, **kw)


def _leaves():  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    shapes = ((B, H, L, D), (B, H, L, D), (B, HKV, S, D), (B, HKV, S, D))
    return [torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True) for s in shapes]


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("mask_name", list(_masks()))
@pytest.mark.parametrize("name", VARIANTS)
def test_grouped_equals_expanded(name: str, mask_name: str, weights: bool) -> None:
    mask, causal = _masks()[mask_name]
    results = []
    for expand in (False, True):
        leaves = _leaves()
        res = _run(name, *leaves, expand, mask, causal, weights)
        out, w = res if weights else (res, None)
        (out.square().sum() + (0 if w is None else w.sum())).backward()
        results.append((out, w, [t.grad for t in leaves]))
    (o1, w1, g1), (o2, w2, g2) = results
    torch.testing.assert_close(o1, o2, rtol=1e-12, atol=1e-12)
    if weights:
        torch.testing.assert_close(w1, w2, rtol=1e-12, atol=1e-12)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["softmax", "dagpam", "centered", "gated"])
def test_torch24_fallback_expands(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``enable_gqa`` (torch 2.4) SDPA gets K/V repeated: same values."""
    want = _run(name, *_leaves(), True, *_masks()["padding_causal"], False)
    monkeypatch.setattr(gqa_mod, "SDPA_GQA", False)
    got = _run(name, *_leaves(), False, *_masks()["padding_causal"], False)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_no_kv_copy_on_default_path() -> None:
    """The SDPA path neither repeats K/V nor calls SDPA on H key/value heads."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: list[tuple[str, tuple]] = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if "scaled_dot_product" in str(func) and "backward" not in str(func):
                seen.append((str(func), tuple(args[1].shape)))
            return func(*args, **(kwargs or {}))

    q, qn, k, v = _leaves()
    with Record():
        _run("dagpam", q, qn, k, v, False, None, True, False)
    assert seen and all(shape[1] == HKV for _, shape in seen), seen
