"""Triton kernels for fused daGPAM attention (forward, dK/dV and dQ passes).

Imported lazily by :mod:`gpam.kernels.dagpam_fused` (so ``TRITON_INTERPRET=1`` set before the
first use is honoured). One program handles one (batch*head, tile) pair and keeps *two* online
softmaxes, one for ``q_pos`` and one for ``q_neg``, so each K/V tile is loaded once for both.
Scores are kept in base 2 (``s2 = q.k * scale * log2(e)``); the saved log-sum-exps are base 2.
Layout: q/k/v/o are (B, H or Hkv, L, D) addressed through their strides (last stride 1); query
head ``h`` reads K/V head ``h // GROUP`` (grouped-query attention without copies); lse/delta are
(B*H, L) fp32; dQ/dK/dV are written contiguous. Offsets are computed in int64 (no overflow for
tensors over 2**31 elements); ``BH0`` offsets the (batch*head) grid axis so the host can split
launches to keep grid axis 1 <= 65535. ``PREC`` is ``tl.dot``'s input precision ("ieee" for fp32:
no silent TF32).
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

LOG2E = 1.4426950408889634
# Triton picks interpreter vs compiler when @triton.jit runs, i.e. when this module is imported.
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@triton.jit
def _fwd_kernel(
    QP, QN, K, V, OP, ON, LSEP, LSEN,
    sq_b, sq_h, sq_l,
    sk_b, sk_h, sk_l,
    sv_b, sv_h, sv_l,
    so_b, so_h, so_l,
    H, LQ, LK, qk_scale, BH0,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr,
    GROUP: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    start_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64) + BH0
    b = bh // H
    h = bh % H
    hk = h // GROUP
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    m_ok = offs_m < LQ
    rows64 = offs_m.to(tl.int64)
    q_off = b * sq_b + h * sq_h + rows64[:, None] * sq_l + offs_d[None, :]
    qp = tl.load(QP + q_off, mask=m_ok[:, None], other=0.0)
    qn = tl.load(QN + q_off, mask=m_ok[:, None], other=0.0)
    mp = tl.full([BLOCK_M], float("-inf"), tl.float32)
    mn = tl.full([BLOCK_M], float("-inf"), tl.float32)
    lp = tl.zeros([BLOCK_M], tl.float32)
    ln = tl.zeros([BLOCK_M], tl.float32)
    accp = tl.zeros([BLOCK_M, D], tl.float32)
    accn = tl.zeros([BLOCK_M, D], tl.float32)
    k_base = K + b * sk_b + hk * sk_h
    v_base = V + b * sv_b + hk * sv_h
    hi = LK
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, LK)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        n_ok = cols < LK
        cols64 = cols.to(tl.int64)
        k = tl.load(
            k_base + cols64[:, None] * sk_l + offs_d[None, :], mask=n_ok[:, None], other=0.0
        )
        v = tl.load(
            v_base + cols64[:, None] * sv_l + offs_d[None, :], mask=n_ok[:, None], other=0.0
        )
        keep = n_ok[None, :]
        if CAUSAL:
            keep = keep & (offs_m[:, None] >= cols[None, :])
        kt = tl.trans(k)
        # positive branch
        s = tl.dot(qp, kt, input_precision=PREC) * qk_scale
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(mp, tl.max(s, 1))
        alpha = tl.exp2(mp - m_new)
        p = tl.exp2(s - m_new[:, None])
        lp = lp * alpha + tl.sum(p, 1)
        accp = accp * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
        mp = m_new
        # negative branch (same K/V tile)
        s = tl.dot(qn, kt, input_precision=PREC) * qk_scale
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(mn, tl.max(s, 1))
        alpha = tl.exp2(mn - m_new)
        p = tl.exp2(s - m_new[:, None])
        ln = ln * alpha + tl.sum(p, 1)
        accn = accn * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
        mn = m_new
    lp = tl.where(m_ok, lp, 1.0)
    ln = tl.where(m_ok, ln, 1.0)
    o_off = b * so_b + h * so_h + rows64[:, None] * so_l + offs_d[None, :]
    tl.store(OP + o_off, (accp / lp[:, None]).to(OP.dtype.element_ty), mask=m_ok[:, None])
    tl.store(ON + o_off, (accn / ln[:, None]).to(ON.dtype.element_ty), mask=m_ok[:, None])
    tl.store(LSEP + bh * LQ + rows64, mp + tl.log2(lp), mask=m_ok)
    tl.store(LSEN + bh * LQ + rows64, mn + tl.log2(ln), mask=m_ok)


@triton.jit
def _bwd_dkdv_kernel(
    QP, QN, K, V, DOP, DON, LSEP, LSEN, DELP, DELN, DK, DV,
    sq_b, sq_h, sq_l,
    sk_b, sk_h, sk_l,
    sv_b, sv_h, sv_l,
    sd_b, sd_h, sd_l,
    H, LQ, LK, qk_scale, sm_scale, BH0,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr,
    GROUP: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dK, dV for one K/V tile of K/V head ``hk``, summed over both branches and the GROUP query
    heads that share it (no atomics, no K/V copies); dK/dV are contiguous (B, Hkv, LK, D)."""
    start_n = tl.program_id(0)
    bhk = tl.program_id(1).to(tl.int64) + BH0  # over B * Hkv
    hkv = H // GROUP
    b = bhk // hkv
    hk = bhk % hkv
    cols = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D)
    n_ok = cols < LK
    cols64 = cols.to(tl.int64)
    k = tl.load(
        K + b * sk_b + hk * sk_h + cols64[:, None] * sk_l + offs_d[None, :],
        mask=n_ok[:, None],
        other=0.0,
    )
    v = tl.load(
        V + b * sv_b + hk * sv_h + cols64[:, None] * sv_l + offs_d[None, :],
        mask=n_ok[:, None],
        other=0.0,
    )
    dk = tl.zeros([BLOCK_N, D], tl.float32)
    dv = tl.zeros([BLOCK_N, D], tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N) // BLOCK_M * BLOCK_M
    for g in range(GROUP):
        h = hk * GROUP + g
        bh = b * H + h
        for start_m in range(lo, LQ, BLOCK_M):
            rows = start_m + offs_m
            m_ok = rows < LQ
            rows64 = rows.to(tl.int64)
            keep = m_ok[:, None] & n_ok[None, :]
            if CAUSAL:
                keep = keep & (rows[:, None] >= cols[None, :])
            q_off = b * sq_b + h * sq_h + rows64[:, None] * sq_l + offs_d[None, :]
            d_off = b * sd_b + h * sd_h + rows64[:, None] * sd_l + offs_d[None, :]
            # positive branch
            q = tl.load(QP + q_off, mask=m_ok[:, None], other=0.0)
            do = tl.load(DOP + d_off, mask=m_ok[:, None], other=0.0)
            lse = tl.load(LSEP + bh * LQ + rows64, mask=m_ok, other=0.0)
            dl = tl.load(DELP + bh * LQ + rows64, mask=m_ok, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
            p = tl.where(keep, tl.exp2(s - lse[:, None]), 0.0)
            dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PREC)
            dp = tl.dot(do, tl.trans(v), input_precision=PREC)
            ds = p * (dp - dl[:, None])
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PREC)
            # negative branch
            q = tl.load(QN + q_off, mask=m_ok[:, None], other=0.0)
            do = tl.load(DON + d_off, mask=m_ok[:, None], other=0.0)
            lse = tl.load(LSEN + bh * LQ + rows64, mask=m_ok, other=0.0)
            dl = tl.load(DELN + bh * LQ + rows64, mask=m_ok, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
            p = tl.where(keep, tl.exp2(s - lse[:, None]), 0.0)
            dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PREC)
            dp = tl.dot(do, tl.trans(v), input_precision=PREC)
            ds = p * (dp - dl[:, None])
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PREC)
    out_off = bhk * LK * D + cols64[:, None] * D + offs_d[None, :]
    tl.store(DK + out_off, (dk * sm_scale).to(DK.dtype.element_ty), mask=n_ok[:, None])
    tl.store(DV + out_off, dv.to(DV.dtype.element_ty), mask=n_ok[:, None])


@triton.jit
def _bwd_dq_kernel(
    QP, QN, K, V, DOP, DON, LSEP, LSEN, DELP, DELN, DQP, DQN,
    sq_b, sq_h, sq_l,
    sk_b, sk_h, sk_l,
    sv_b, sv_h, sv_l,
    sd_b, sd_h, sd_l,
    H, LQ, LK, qk_scale, sm_scale, BH0,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr,
    GROUP: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dQ_pos and dQ_neg for one query tile, reading each K/V tile once for both branches."""
    start_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64) + BH0
    b = bh // H
    h = bh % H
    hk = h // GROUP
    rows = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    m_ok = rows < LQ
    rows64 = rows.to(tl.int64)
    q_off = b * sq_b + h * sq_h + rows64[:, None] * sq_l + offs_d[None, :]
    d_off = b * sd_b + h * sd_h + rows64[:, None] * sd_l + offs_d[None, :]
    qp = tl.load(QP + q_off, mask=m_ok[:, None], other=0.0)
    qn = tl.load(QN + q_off, mask=m_ok[:, None], other=0.0)
    dop = tl.load(DOP + d_off, mask=m_ok[:, None], other=0.0)
    don = tl.load(DON + d_off, mask=m_ok[:, None], other=0.0)
    lsep = tl.load(LSEP + bh * LQ + rows64, mask=m_ok, other=0.0)
    lsen = tl.load(LSEN + bh * LQ + rows64, mask=m_ok, other=0.0)
    delp = tl.load(DELP + bh * LQ + rows64, mask=m_ok, other=0.0)
    deln = tl.load(DELN + bh * LQ + rows64, mask=m_ok, other=0.0)
    dqp = tl.zeros([BLOCK_M, D], tl.float32)
    dqn = tl.zeros([BLOCK_M, D], tl.float32)
    k_base = K + b * sk_b + hk * sk_h
    v_base = V + b * sv_b + hk * sv_h
    hi = LK
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, LK)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        n_ok = cols < LK
        cols64 = cols.to(tl.int64)
        k = tl.load(
            k_base + cols64[:, None] * sk_l + offs_d[None, :], mask=n_ok[:, None], other=0.0
        )
        v = tl.load(
            v_base + cols64[:, None] * sv_l + offs_d[None, :], mask=n_ok[:, None], other=0.0
        )
        keep = m_ok[:, None] & n_ok[None, :]
        if CAUSAL:
            keep = keep & (rows[:, None] >= cols[None, :])
        kt = tl.trans(k)
        vt = tl.trans(v)
        s = tl.dot(qp, kt, input_precision=PREC) * qk_scale
        p = tl.where(keep, tl.exp2(s - lsep[:, None]), 0.0)
        ds = p * (tl.dot(dop, vt, input_precision=PREC) - delp[:, None])
        dqp += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
        s = tl.dot(qn, kt, input_precision=PREC) * qk_scale
        p = tl.where(keep, tl.exp2(s - lsen[:, None]), 0.0)
        ds = p * (tl.dot(don, vt, input_precision=PREC) - deln[:, None])
        dqn += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
    out_off = bh * LQ * D + rows64[:, None] * D + offs_d[None, :]
    tl.store(DQP + out_off, (dqp * sm_scale).to(DQP.dtype.element_ty), mask=m_ok[:, None])
    tl.store(DQN + out_off, (dqn * sm_scale).to(DQN.dtype.element_ty), mask=m_ok[:, None])
