"""Fused daGPAM Triton kernel vs a float64 reference, in Triton's CPU interpreter.

Triton chooses between compiling and interpreting when each ``@triton.jit`` function is
*defined*, including its standard library (``tl.sum``, ``tl.zeros``) at ``import triton``. So
the kernel tests run in a child pytest process started with ``TRITON_INTERPRET=1`` in its
environment (``test_interpreter_suite``); in the parent process they are skipped, and the
parent's environment stays untouched for every other test.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

CHILD = os.environ.get("GPAM_TRITON_CHILD") == "1"
pytestmark = [
    pytest.mark.triton,
    pytest.mark.skipif(
        importlib.util.find_spec("triton") is None, reason="triton cannot be imported"
    ),
]
child_only = pytest.mark.skipif(
    not CHILD, reason="runs in the TRITON_INTERPRET=1 child process of test_interpreter_suite"
)


@pytest.mark.skipif(CHILD, reason="this is the child process")
def test_interpreter_suite():
    env = {**os.environ, "TRITON_INTERPRET": "1", "GPAM_TRITON_CHILD": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-x", "-p", "no:cacheprovider"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" in proc.stdout


@pytest.fixture(scope="module")
def fused():
    assert os.environ.get("TRITON_INTERPRET") == "1"
    from gpam.kernels import dagpam_fused
    from gpam.kernels.dagpam_fused import _kernels

    assert _kernels().INTERPRETED
    return dagpam_fused


def reference(qp, qn, k, v, lam_pos, lam_neg, causal, scale):
    """Explicit float64 daGPAM: (lam_pos softmax(qp k^T s) - lam_neg softmax(qn k^T s)) v."""
    rep = qp.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    sp = (qp @ k.transpose(-1, -2)) * scale
    sn = (qn @ k.transpose(-1, -2)) * scale
    if causal:
        keep = torch.ones(qp.shape[2], k.shape[2], dtype=torch.bool).tril()
        sp = sp.masked_fill(~keep, float("-inf"))
        sn = sn.masked_fill(~keep, float("-inf"))
    lp = lam_pos.view(1, -1, 1, 1) if torch.is_tensor(lam_pos) else lam_pos
    ln = lam_neg.view(1, -1, 1, 1) if torch.is_tensor(lam_neg) else lam_neg
    return lp * (sp.softmax(-1) @ v) - ln * (sn.softmax(-1) @ v)


@child_only
@pytest.mark.parametrize(
    ("length", "head_dim", "causal", "tensor_lam"),
    [(32, 16, True, True), (48, 16, False, True), (48, 64, True, False), (40, 32, False, False)],
)
def test_fused_matches_float64_reference(fused, length, head_dim, causal, tensor_lam):
    torch.manual_seed(length + head_dim)
    shape = (1, 2, length, head_dim)
    xs = [torch.randn(shape, requires_grad=True) for _ in range(4)]
    lam = torch.tensor([0.3, 0.8], requires_grad=True) if tensor_lam else 0.6
    lam_pos = 1 + lam
    scale = 0.7 / head_dim**0.5
    out = fused(*xs, lam_pos, lam, causal, scale)
    grad = torch.randn_like(out)
    wrt = xs + ([lam] if tensor_lam else [])
    got = torch.autograd.grad(out, wrt, grad)

    xd = [x.detach().double().requires_grad_() for x in xs]
    lam_d = lam.detach().double().requires_grad_() if tensor_lam else lam
    ref = reference(*xd, 1 + lam_d, lam_d, causal, scale)
    want = torch.autograd.grad(ref, xd + ([lam_d] if tensor_lam else []), grad.double())

    assert out.shape == shape and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)
    for name, g, w in zip(["q_pos", "q_neg", "k", "v", "lam"], got, want):
        torch.testing.assert_close(g.double(), w, atol=5e-5, rtol=1e-4, msg=name)


@child_only
def test_fused_grouped_kv_and_default_scale(fused):
    torch.manual_seed(1)
    qp, qn = torch.randn(1, 4, 24, 16), torch.randn(1, 4, 24, 16)
    k, v = torch.randn(1, 2, 24, 16), torch.randn(1, 2, 24, 16)
    out = fused(qp, qn, k, v, 1.5, 0.5, False, None)
    ke, ve = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    ref = reference(qp.double(), qn.double(), ke.double(), ve.double(), 1.5, 0.5, False, 0.25)
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)


@child_only
def test_fused_lam_zero_is_softmax_sdpa(fused):
    torch.manual_seed(2)
    q, qn, k, v = (torch.randn(1, 2, 33, 16) for _ in range(4))
    out = fused(q, qn, k, v, 1.0, 0.0, True, None)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, want, atol=2e-5, rtol=1e-4)


@child_only
def test_predicate_and_errors(fused):
    from gpam.kernels import fused_dagpam_available

    q = torch.randn(1, 2, 16, 64)
    assert not fused_dagpam_available(q)  # CPU tensors always take the SDPA path
    with pytest.raises(ValueError, match="head_dim"):
        fused(*(torch.randn(1, 2, 16, 24) for _ in range(4)), 1.5, 0.5, False, None)
    with pytest.raises(ValueError, match="lam_neg"):
        fused(q, q, q, q, 1.5, torch.ones(3), False, None)


@child_only
def test_fused_float16_outputs_and_gradients(fused):
    torch.manual_seed(3)
    xs = [torch.randn(1, 2, 40, 16, dtype=torch.float16, requires_grad=True) for _ in range(4)]
    out = fused(*xs, 1.5, 0.5, True, None)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, xs, grad)
    xd = [x.detach().double().requires_grad_() for x in xs]
    ref = reference(*xd, 1.5, 0.5, True, 0.25)
    want = torch.autograd.grad(ref, xd, grad.double())
    assert out.dtype == torch.float16 and all(g.dtype == torch.float16 for g in got)
    torch.testing.assert_close(out.double(), ref, atol=1e-2, rtol=1e-2)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double(), w, atol=3e-2, rtol=3e-2)


def _check_against_reference(fused, xs, lam_pos, lam_neg, causal, scale, atol=3e-5):
    """Output and gradients of q_pos, q_neg, k, v (inputs ``xs``, any strides) vs float64."""
    out = fused(*xs, lam_pos, lam_neg, causal, scale)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, xs, grad)
    xd = [x.detach().double().requires_grad_() for x in xs]
    ref = reference(*xd, lam_pos, lam_neg, causal, scale)
    want = torch.autograd.grad(ref, xd, grad.double())
    torch.testing.assert_close(out.double(), ref, atol=atol, rtol=1e-4)
    for name, g, w in zip(["q_pos", "q_neg", "k", "v"], got, want):
        assert g.shape == w.shape, name
        torch.testing.assert_close(g.double(), w, atol=2 * atol, rtol=1e-4, msg=name)


@child_only
@pytest.mark.parametrize(
    ("lq", "lk", "causal", "blocks"),
    [
        (24, 40, False, None),
        (40, 24, True, None),
        (37, 37, True, (32, 16)),
        (30, 45, True, (16, 32)),
    ],
)
def test_fused_batch_lengths_and_block_shapes(fused, monkeypatch, lq, lk, causal, blocks):
    """B > 1, Lq != Lk (top-left causal as SDPA) and BLOCK_M != BLOCK_N causal tile bounds."""
    mod = importlib.import_module("gpam.kernels.dagpam_fused")

    monkeypatch.setattr(mod, "BLOCKS_OVERRIDE", blocks)
    torch.manual_seed(lq * lk)
    qp, qn = (torch.randn(2, 2, lq, 16, requires_grad=True) for _ in range(2))
    k, v = (torch.randn(2, 2, lk, 16, requires_grad=True) for _ in range(2))
    _check_against_reference(fused, [qp, qn, k, v], 1.4, 0.4, causal, 0.3)


@child_only
def test_fused_grouped_query_gradients_without_copies(fused, monkeypatch):
    """GQA: 4 query heads over 2 K/V heads; dK/dV summed over each group, shapes of k and v."""
    mod = importlib.import_module("gpam.kernels.dagpam_fused")

    monkeypatch.setattr(mod, "BLOCKS_OVERRIDE", (16, 16))
    torch.manual_seed(4)
    qp, qn = (torch.randn(2, 4, 20, 16, requires_grad=True) for _ in range(2))
    k, v = (torch.randn(2, 2, 28, 16, requires_grad=True) for _ in range(2))
    _check_against_reference(fused, [qp, qn, k, v], 1.5, 0.5, True, 0.25)


@child_only
def test_fused_non_contiguous_inputs(fused):
    """(B, L, H, D) tensors viewed as (B, H, L, D), and a q_neg with strides unlike q_pos."""
    torch.manual_seed(5)
    base = [torch.randn(2, 19, 2, 16) for _ in range(4)]
    qp, k, v = (t.transpose(1, 2).requires_grad_() for t in (base[0], base[2], base[3]))
    qn = base[1].transpose(1, 2).contiguous().requires_grad_()
    assert not qp.is_contiguous() and qn.is_contiguous()
    _check_against_reference(fused, [qp, qn, k, v], 1.3, 0.3, False, 0.25)


@child_only
def test_fused_grid_split_over_batch_heads(fused, monkeypatch):
    """More (batch*head) rows than one launch may hold: split launches (BH0 offsets)."""
    mod = importlib.import_module("gpam.kernels.dagpam_fused")

    monkeypatch.setattr(mod, "MAX_GRID_Y", 3)
    torch.manual_seed(6)
    qp, qn = (torch.randn(2, 4, 17, 16, requires_grad=True) for _ in range(2))
    k, v = (torch.randn(2, 2, 17, 16, requires_grad=True) for _ in range(2))
    _check_against_reference(fused, [qp, qn, k, v], 1.5, 0.5, True, 0.25)


@child_only
def test_fused_double_backward_raises(fused):
    """Second derivatives are not implemented: asking for them raises instead of being wrong."""
    x = [torch.randn(1, 1, 16, 16, requires_grad=True) for _ in range(4)]
    loss = fused(*x, 1.5, 0.5, False, None).square().sum()  # its output gradient needs grad
    (g,) = torch.autograd.grad(loss, x[0], create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.sum().backward()


@child_only
def test_dagpam_attention_hands_off_to_fused_with_gpam_fused(fused, monkeypatch):
    """GPAM_FUSED=1 under TRITON_INTERPRET=1 routes CPU inputs to the kernel (and only then)."""
    mod = importlib.import_module("gpam.kernels.dagpam_fused")
    from gpam.functional import dagpam_attention

    calls = []
    real = mod._DagpamFusedFn.apply
    monkeypatch.setattr(mod._DagpamFusedFn, "apply", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(7)
    qp, qn = torch.randn(2, 4, 21, 16), torch.randn(2, 4, 21, 16)
    k, v = torch.randn(2, 2, 21, 16), torch.randn(2, 2, 21, 16)
    lam = torch.tensor([0.1, 0.2, 0.3, 0.4])
    monkeypatch.delenv("GPAM_FUSED", raising=False)
    want = dagpam_attention(qp, qn, k, v, lam_neg=lam, is_causal=True)
    assert calls == []  # default: SDPA
    monkeypatch.setenv("GPAM_FUSED", "1")
    got = dagpam_attention(qp, qn, k, v, lam_neg=lam, is_causal=True)
    assert calls == [1]
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    mask = torch.ones(21, 21, dtype=torch.bool)
    dagpam_attention(qp, qn, k, v, lam_neg=lam, attn_mask=mask)  # a mask: SDPA path
    assert calls == [1]


@child_only
def test_dagpam_attention_falls_back_with_a_warning(fused, monkeypatch):
    mod = importlib.import_module("gpam.kernels.dagpam_fused")
    from gpam.functional import dagpam_attention

    def broken(*args):
        raise RuntimeError("simulated Triton compile failure")

    monkeypatch.setattr(mod._DagpamFusedFn, "apply", broken)
    monkeypatch.setattr(mod, "_WARNED", False)
    monkeypatch.setenv("GPAM_FUSED", "1")
    q, qn, k, v = (torch.randn(1, 2, 9, 16) for _ in range(4))
    with pytest.warns(RuntimeWarning, match="simulated Triton compile failure"):
        got = dagpam_attention(q, qn, k, v, lam_neg=0.5)
    monkeypatch.delenv("GPAM_FUSED")
    torch.testing.assert_close(got, dagpam_attention(q, qn, k, v, lam_neg=0.5))


def test_precision_and_capability_rules():
    """fp32 dots run in IEEE precision (no TF32); CPU tensors are never 'available' on CUDA."""

    from gpam.kernels.dagpam_fused import MIN_CAPABILITY, _precision, fused_dagpam_available

    assert _precision(torch.float32) == "ieee"
    assert _precision(torch.bfloat16) is None and _precision(torch.float16) is None
    assert MIN_CAPABILITY >= (8, 0)
    assert not fused_dagpam_available(torch.randn(1, 2, 8, 64))


@child_only
def test_gpu_check_smoke_includes_the_fused_kernel(tmp_path):
    """benchmarks/gpu_check.py --cpu under the interpreter checks the kernel too (fp32, fp16)."""
    import json
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    main = runpy.run_path(str(script))["main"]
    out = tmp_path / "smoke.json"
    assert main(["--cpu", "--dtypes", "float32,float16", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    fused = [c for c in report["checks"] if c["what"].startswith("dagpam_fused")]
    assert len(fused) == 12 and all(c["ok"] for c in fused)
    assert any(t["method"] == "dagpam_fused" for t in report["timings"])


@pytest.mark.skipif(CHILD, reason="compiles for CUDA targets, not in the interpreter")
def test_kernels_compile_for_sm80_without_tf32(tmp_path):
    """Ahead-of-time CUDA compile (no GPU needed): fp32 PTX has no TF32, bf16 PTX uses MMA."""
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "kernel_compile_check.py"
    out = tmp_path / "compile.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    args = ["--targets", "80", "--dtypes", "float32,bfloat16", "--kernels", "fwd", "--head-dims",
            "32", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = {r["dtype"]: r for r in json.loads(out.read_text())["results"]}
    assert results["float32"]["tf32_in_ptx"] == 0 and results["float32"]["cubin_bytes"] > 0
    assert results["bfloat16"]["mma_in_ptx"] > 0
