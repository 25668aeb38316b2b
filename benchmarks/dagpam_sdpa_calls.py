"""Paired A/B of daGPAM's two SDPA paths: one call over 2H query heads vs two calls.

    python benchmarks/dagpam_sdpa_calls.py [ROUNDS]

B=2, H=8, D=64, causal, float32, forward+backward, one thread, process CPU time (robust on a
shared machine). Each round times softmax SDPA, the one-call path and the two-call path of
``gpam.functional.dagpam_attention`` back to back (``ONE_CALL_DEVICES`` switches the path), so
the one/two ratio is paired; medians and quartiles over rounds are printed.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
import torch.nn.functional as F

import gpam.functional.dagpam as dg


def _cpu_time(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def main(rounds: int = 15) -> None:
    torch.set_num_threads(1)
    for length in (1024, 2048):
        g = torch.Generator().manual_seed(0)
        q, qn, k, v = (
            torch.randn(2, 8, length, 64, generator=g).requires_grad_() for _ in range(4)
        )
        go = torch.randn(2, 8, length, 64, generator=g)

        x = (q, qn, k, v)

        def dagpam(devices: frozenset, x: tuple = x, go: torch.Tensor = go) -> None:
            dg.ONE_CALL_DEVICES = devices
            dg.dagpam_attention(*x, lam_neg=0.5, is_causal=True).backward(go)

        def sdpa(x: tuple = x, go: torch.Tensor = go) -> None:
            F.scaled_dot_product_attention(x[0], x[2], x[3], is_causal=True).backward(go)

        one_fn, two_fn = (lambda: dagpam(frozenset({"cpu"}))), (lambda: dagpam(frozenset()))
        for fn in (sdpa, one_fn, two_fn):  # warm-up
            fn()
        one, two, base = [], [], []
        for _ in range(rounds):
            base.append(_cpu_time(sdpa))
            one.append(_cpu_time(one_fn))
            two.append(_cpu_time(two_fn))
        ratio = [a / b for a, b in zip(one, two)]
        q1, _, q3 = statistics.quantiles(ratio, n=4)
        med = statistics.median
        print(
            f"L={length}: one call {med(one) * 1e3:.0f} ms "
            f"({med([a / s for a, s in zip(one, base)]):.2f}x sdpa), two calls "
            f"{med(two) * 1e3:.0f} ms ({med([b / s for b, s in zip(two, base)]):.2f}x sdpa); "
            f"one/two median {med(ratio):.3f} [quartiles {q1:.3f}, {q3:.3f}], "
            f"min/min {min(one) / min(two):.3f}"
        )
    dg.ONE_CALL_DEVICES = frozenset()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
