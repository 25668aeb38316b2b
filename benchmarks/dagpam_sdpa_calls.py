"""Paired A/B of daGPAM's SDPA paths: one call over 2H query heads, two calls, and a decoding
step's one call over two query rows (the fold).

    python benchmarks/dagpam_sdpa_calls.py [ROUNDS]

One thread, float32, process CPU time (robust on a shared machine). Each round times softmax
SDPA and every daGPAM path of ``gpam.functional.dagpam_attention`` back to back
(``ONE_CALL_DEVICES`` / ``FOLD_DEVICES`` switch the path), so the ratios are paired; medians and
quartiles over rounds are printed.

* causal, B=2, H=8, D=64, forward+backward, L = 1024, 2048: one call over 2H heads vs two calls
  (the fold does not apply to causal attention);
* a decoding step (one query row over 24 or 256 keys, no grad, B = 1, 4, 16, 64, H=4, laid out
  as ``gpam.MultiheadAttention``'s one-GEMM query leaves them): the fold (one call over the two
  query rows, ``gpam.functional.dagpam.folded_query``) vs two calls.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import gpam.functional.dagpam as dg

CPU, NONE = frozenset({"cpu"}), frozenset()


def _cpu_time(fn: Callable[[], object]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def _paired(arms: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per round of each arm, timed round-robin after one warm-up round."""
    for fn in arms.values():
        fn()
    times: dict[str, list[float]] = {a: [] for a in arms}
    for _ in range(rounds):
        for a, fn in arms.items():
            times[a].append(_cpu_time(fn))
    return times


def _ratio(times: dict[str, list[float]], a: str, b: str) -> str:
    r = [x / y for x, y in zip(times[a], times[b])]
    q1, med, q3 = statistics.quantiles(r, n=4)
    return f"{a}/{b} {med:.3f} [{q1:.3f}, {q3:.3f}]"


def _set_paths(one_call: frozenset, fold: frozenset) -> None:
    dg.ONE_CALL_DEVICES, dg.FOLD_DEVICES = one_call, fold


def _dagpam(x: tuple, go: torch.Tensor | None, causal: bool, paths: tuple) -> Callable[[], None]:
    def run() -> None:
        _set_paths(*paths)
        out = dg.dagpam_attention(*x, lam_neg=0.5, is_causal=causal)
        if go is not None:
            out.backward(go)

    return run


def _sdpa(x: tuple, go: torch.Tensor | None, causal: bool) -> Callable[[], None]:
    def run() -> None:
        out = F.scaled_dot_product_attention(x[0], x[2], x[3], is_causal=causal)
        if go is not None:
            out.backward(go)

    return run


def _report(label: str, times: dict[str, list[float]], pairs: list[tuple[str, str]]) -> None:
    med = statistics.median
    ms = ", ".join(f"{a} {med(t) * 1e3:.2f} ms" for a, t in times.items())
    print(f"{label}: {ms}; " + "; ".join(_ratio(times, a, b) for a, b in pairs))


def causal_calls(rounds: int) -> None:
    """One call over 2H query heads vs two calls, causal fwd+bwd."""
    for length in (1024, 2048):
        g = torch.Generator().manual_seed(0)
        x = tuple(torch.randn(2, 8, length, 64, generator=g).requires_grad_() for _ in range(4))
        go = torch.randn(2, 8, length, 64, generator=g)
        arms = {
            "sdpa": _sdpa(x, go, True),
            "one_call": _dagpam(x, go, True, (CPU, NONE)),
            "two_calls": _dagpam(x, go, True, (NONE, NONE)),
        }
        t = _paired(arms, rounds)
        _report(f"causal L={length}", t, [("one_call", "two_calls"), ("two_calls", "sdpa")])


def folded_rows(rounds: int) -> None:
    """A decoding step (one query row, no grad): the fold vs two calls, over batch and keys."""
    for b, lk in [(b, lk) for lk in (24, 256) for b in (1, 4, 16, 64)]:
        g = torch.Generator().manual_seed(0)
        # the layer's one-GEMM layout: each head's (positive, negative) query rows adjacent
        q, q_neg = torch.randn(b, 1, 4, 2, 64, generator=g).permute(3, 0, 2, 1, 4).unbind(0)
        x = (q, q_neg, torch.randn(b, 4, lk, 64, generator=g), torch.randn(b, 4, lk, 64))
        saved, dg.FOLD_MIN_KEY_ROWS = dg.FOLD_MIN_KEY_ROWS, 0  # time the fold at every size
        arms = {
            "sdpa": _sdpa(x, None, False),
            "fold": _dagpam(x, None, False, (NONE, CPU)),
            "two_calls": _dagpam(x, None, False, (NONE, NONE)),
        }
        assert dg.folded_query(q, q_neg, x[2], None, False, 0.0, CPU) is not None
        with torch.no_grad():
            t = _paired(arms, rounds)
        dg.FOLD_MIN_KEY_ROWS = saved
        label = f"decoding step B={b} H=4 Lq=1 Lk={lk} ({b * 4 * lk} key rows)"
        _report(label, t, [("fold", "two_calls"), ("fold", "sdpa"), ("two_calls", "sdpa")])


def main(rounds: int = 15) -> None:
    torch.set_num_threads(1)
    saved = dg.ONE_CALL_DEVICES, dg.FOLD_DEVICES
    try:
        folded_rows(rounds)
        causal_calls(rounds)
    finally:
        _set_paths(*saved)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
