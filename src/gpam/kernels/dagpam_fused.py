"""Fused daGPAM attention: one Triton pass over K/V tiles for both softmax maps.

``out = lam_pos * softmax(q_pos k^T s) v - lam_neg * softmax(q_neg k^T s) v`` with memory linear
in L: the forward keeps two online softmaxes per query tile and saves the two log-sum-exps; the
backward recomputes the probabilities tile by tile (FlashAttention-2 style), reading each K/V
tile once for both branches. Use :func:`fused_dagpam_available` to decide when it applies.

Opt-in only: ``gpam.functional.dagpam_attention`` routes here when ``GPAM_FUSED=1`` (CUDA, or CPU
under ``TRITON_INTERPRET=1``); if Triton fails to compile or launch the forward it warns and uses
SDPA. Not yet run on a GPU in this project (see docs/benchmarks.md); checked in Triton's CPU
interpreter only. fp32 inputs use IEEE ``tl.dot`` (no TF32); K/V heads are shared by grouped
query heads without copies; launches run under ``torch.cuda.device(q.device)``.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from types import ModuleType
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
#: minimum CUDA compute capability (Ampere: bf16 tensor cores; older GPUs use SDPA)
MIN_CAPABILITY = (8, 0)
#: grid axis 1 (batch*heads) limit of CUDA launches; larger counts are split into launches
MAX_GRID_Y = 65535
#: (BLOCK_M, BLOCK_N) override for tests (None: :func:`_blocks` decides)
BLOCKS_OVERRIDE: tuple[int, int] | None = None
_MODULE: ModuleType | None = None
_WARNED = False


def triton_available() -> bool:
    """True when the ``triton`` package can be imported (without importing it)."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """True when Triton runs in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _kernels() -> ModuleType:
    """The Triton kernel module, imported on first use.

    Triton decides between compiling and interpreting when each ``@triton.jit`` function is
    defined (its standard library at ``import triton``), so ``TRITON_INTERPRET=1`` must be set
    before triton is first imported in the process.
    """
    global _MODULE
    if _MODULE is None:
        from gpam.kernels import _triton_dagpam

        _MODULE = _triton_dagpam
    return _MODULE


def fused_dagpam_available(
    q: Tensor,
    k: Tensor | None = None,
    *,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    return_weights: bool = False,
) -> bool:
    """Whether :func:`dagpam_fused` can run this call on CUDA (else use the SDPA path).

    True only for CUDA tensors with triton importable, compute capability >= 8.0
    (:data:`MIN_CAPABILITY`), 4-D (B, H, L, D) inputs, head_dim in 16/32/64/128, fp16/bf16/fp32,
    no ``attn_mask``, no dropout and no explicit weights requested. CPU tensors: see
    :func:`interpreter_applies`.
    """
    if not isinstance(q, Tensor) or q.dim() != 4 or not q.is_cuda or not triton_available():
        return False
    if attn_mask is not None or dropout_p != 0.0 or return_weights:
        return False
    if q.dtype not in SUPPORTED_DTYPES or q.shape[-1] not in SUPPORTED_HEAD_DIMS:
        return False
    if torch.cuda.get_device_capability(q.device) < MIN_CAPABILITY:
        return False
    return k is None or (k.dim() == 4 and k.shape[-1] == q.shape[-1] and k.device == q.device)


def interpreter_applies(q: Tensor) -> bool:
    """True for CPU inputs the kernel can run in Triton's interpreter (``TRITON_INTERPRET=1``).

    fp16/fp32 only: the interpreter (Triton 3.9) computes bfloat16 ``tl.dot`` wrongly (a 16 x 16
    bf16 product came out ~1e10 off), so bf16 is never routed to it.
    """
    return (
        isinstance(q, Tensor) and q.device.type == "cpu" and interpreting() and triton_available()
        and q.dim() == 4 and q.dtype in (torch.float16, torch.float32)
        and q.shape[-1] in SUPPORTED_HEAD_DIMS
    )  # fmt: skip


def warn_fallback(err: BaseException) -> None:
    """Warn (once per process) that the fused kernel failed and SDPA is used instead."""
    global _WARNED
    if not _WARNED:
        _WARNED = True
        warnings.warn(
            f"gpam: the fused Triton daGPAM kernel failed ({type(err).__name__}: {err}); "
            "using F.scaled_dot_product_attention instead (unset GPAM_FUSED to silence this)",
            RuntimeWarning,
            stacklevel=3,
        )


def _blocks(head_dim: int, dtype: torch.dtype) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) for the device."""
    if BLOCKS_OVERRIDE is not None:
        return BLOCKS_OVERRIDE[0], BLOCKS_OVERRIDE[1], 1 if interpreting() else 4, 1
    if interpreting():
        return 16, 16, 1, 1
    if dtype == torch.float32 or head_dim > 64:
        return 64, 32, 4, 2
    return 64, 64, 4, 2


def _strides(t: Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _unit_last(t: Tensor) -> Tensor:
    """``t`` itself when its last dimension is contiguous (the kernels take other strides)."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _precision(dtype: torch.dtype) -> str | None:
    """``tl.dot`` input precision: IEEE for fp32 (never TF32), the default for fp16/bf16."""
    return "ieee" if dtype == torch.float32 else None


def _device_guard(t: Tensor) -> Any:
    """``torch.cuda.device(t.device)`` for CUDA tensors (multi-GPU), a no-op context otherwise."""
    import contextlib

    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _launch(kernel: Any, tiles: int, rows: int, *args: Any, **meta: Any) -> None:
    """Launch ``kernel`` over ``(tiles, rows)`` in chunks of at most MAX_GRID_Y rows (``BH0``)."""
    for start in range(0, rows, MAX_GRID_Y):
        kernel[(tiles, min(MAX_GRID_Y, rows - start))](*args, start, **meta)


class _DagpamFusedFn(torch.autograd.Function):
    """(q_pos, q_neg, k, v) -> (o_pos, o_neg), each (B, H, Lq, D); K/V read once per tile."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, qp: Tensor, qn: Tensor, k: Tensor, v: Tensor, causal: bool, scale: float
    ) -> tuple[Tensor, Tensor]:
        kern = _kernels()
        qp, qn, k, v = (_unit_last(t) for t in (qp, qn, k, v))
        if qn.stride() != qp.stride():  # the kernels address q_pos and q_neg with one stride set
            qp, qn = qp.contiguous(), qn.contiguous()
        b, h, lq, d = qp.shape
        lk = k.shape[2]
        op = torch.empty(qp.shape, device=qp.device, dtype=qp.dtype)
        on = torch.empty_like(op)
        lsep = torch.empty((b * h, lq), device=qp.device, dtype=torch.float32)
        lsen = torch.empty_like(lsep)
        bm, bn, warps, stages = _blocks(d, qp.dtype)
        meta = dict(
            CAUSAL=causal, BLOCK_M=bm, BLOCK_N=bn, D=d, GROUP=h // k.shape[1],
            PREC=_precision(qp.dtype), num_warps=warps, num_stages=stages,
        )  # fmt: skip
        with _device_guard(qp):
            _launch(
                kern._fwd_kernel, triton_cdiv(lq, bm), b * h,
                qp, qn, k, v, op, on, lsep, lsen,
                *_strides(qp), *_strides(k), *_strides(v), *_strides(op),
                h, lq, lk, scale * kern.LOG2E, **meta,
            )  # fmt: skip
        ctx.save_for_backward(qp, qn, k, v, op, on, lsep, lsen)
        ctx.causal, ctx.scale = causal, scale
        return op, on

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dop: Tensor | None, don: Tensor | None) -> tuple[Any, ...]:  # type: ignore[override]
        kern = _kernels()
        qp, qn, k, v, op, on, lsep, lsen = ctx.saved_tensors
        dop = torch.zeros_like(op) if dop is None else dop.contiguous()
        don = torch.zeros_like(on) if don is None else don.contiguous()
        b, h, lq, d = qp.shape
        hkv, lk = k.shape[1], k.shape[2]
        delp = (op.float() * dop.float()).sum(-1).reshape(b * h, lq)
        deln = (on.float() * don.float()).sum(-1).reshape(b * h, lq)
        dqp = torch.empty(qp.shape, device=qp.device, dtype=qp.dtype)
        dqn = torch.empty_like(dqp)
        dk = torch.empty(k.shape, device=k.device, dtype=k.dtype)
        dv = torch.empty(v.shape, device=v.device, dtype=v.dtype)
        bm, bn, warps, _ = _blocks(d, qp.dtype)
        common = (
            *_strides(qp), *_strides(k), *_strides(v), *_strides(dop),
            h, lq, lk, ctx.scale * kern.LOG2E, ctx.scale,
        )  # fmt: skip
        meta = dict(
            CAUSAL=ctx.causal, BLOCK_M=bm, BLOCK_N=bn, D=d, GROUP=h // hkv,
            PREC=_precision(qp.dtype), num_warps=warps,
        )  # fmt: skip
        with _device_guard(qp):
            _launch(
                kern._bwd_dkdv_kernel, triton_cdiv(lk, bn), b * hkv,
                qp, qn, k, v, dop, don, lsep, lsen, delp, deln, dk, dv, *common, **meta,
            )  # fmt: skip
            _launch(
                kern._bwd_dq_kernel, triton_cdiv(lq, bm), b * h,
                qp, qn, k, v, dop, don, lsep, lsen, delp, deln, dqp, dqn, *common, **meta,
            )  # fmt: skip
        return dqp, dqn, dk, dv, None, None


def triton_cdiv(a: int, b: int) -> int:
    """Ceiling division (grid sizes)."""
    return -(-a // b)


def _as_head_lambda(name: str, lam: float | Tensor, heads: int) -> float | Tensor:
    """A float, or a tensor reshaped to broadcast over (B, H, L, D) (e.g. (B, H, Lq, 1))."""
    if isinstance(lam, Tensor):
        if lam.dim() == 0:
            return lam
        if lam.dim() == 1:
            if lam.shape[0] != heads:
                raise ValueError(f"{name} must have shape ({heads},), got {tuple(lam.shape)}")
            return lam.view(1, heads, 1, 1)
        return lam
    if isinstance(lam, (int, float)):
        return float(lam)
    raise TypeError(f"{name} must be a float or a tensor, got {type(lam).__name__}")


def dagpam_fused(
    q_pos: Tensor,
    q_neg: Tensor,
    k: Tensor,
    v: Tensor,
    lam_pos: float | Tensor | None,
    lam_neg: float | Tensor,
    causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """Fused daGPAM: ``lam_pos * A_pos v - lam_neg * A_neg v`` (B, H, Lq, D).

    ``lam_pos=None`` is the affine form ``1 + lam_neg``, mixed with lambda at its own precision
    (``gpam.functional.lambdas.affine_mix``: no rounding of ``1 + lam_neg`` in bf16).

    q_pos, q_neg (B, H, Lq, D); k, v (B, Hkv, Lk, D) with Hkv dividing H (query head ``h`` uses
    K/V head ``h // (H / Hkv)``, no copy); ``lam_*`` floats or tensors of shape (H,) /
    broadcastable to (B, H, Lq, 1) (gradients flow to them). ``causal`` is top-left aligned as in
    SDPA. Runs on CUDA when :func:`fused_dagpam_available` is True, and on CPU in Triton's
    interpreter (``TRITON_INTERPRET=1``, for tests: slow). Once differentiable (double backward
    raises). Triton errors propagate; ``dagpam_attention`` catches them and falls back to SDPA.
    """
    if not (fused_dagpam_available(q_pos, k) or interpreter_applies(q_pos)):
        raise ValueError(
            "dagpam_fused needs CUDA with compute capability >= 8.0 (or TRITON_INTERPRET=1 on "
            "CPU), triton, 4-D inputs, "
            f"head_dim in {SUPPORTED_HEAD_DIMS} and dtype in fp16/bf16/fp32; got device "
            f"{getattr(q_pos, 'device', None)}, shape {tuple(getattr(q_pos, 'shape', ()))}, "
            f"dtype {getattr(q_pos, 'dtype', None)}"
        )
    if q_neg.shape != q_pos.shape or v.shape[:3] != k.shape[:3] or v.shape[-1] != k.shape[-1]:
        raise ValueError(
            "q_neg must match q_pos and v must match k in shape (same head_dim for v), got "
            f"{tuple(q_pos.shape)}, {tuple(q_neg.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (q_pos.dtype == q_neg.dtype == k.dtype == v.dtype):
        raise TypeError("q_pos, q_neg, k, v must share one dtype")
    heads = q_pos.shape[1]
    if heads % k.shape[1]:
        raise ValueError(f"q heads ({heads}) must be a multiple of k heads ({k.shape[1]})")
    s = 1.0 / math.sqrt(q_pos.shape[-1]) if scale is None else float(scale)
    o_pos, o_neg = _DagpamFusedFn.apply(q_pos, q_neg, k, v, bool(causal), s)
    ln = _as_head_lambda("lam_neg", lam_neg, heads)
    if lam_pos is None:
        from gpam.functional.lambdas import affine_mix

        return affine_mix(o_pos, o_neg, ln)
    return _as_head_lambda("lam_pos", lam_pos, heads) * o_pos - ln * o_neg
