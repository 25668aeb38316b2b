"""Per-call time of one attention layer at tiny shapes, where Python and per-operator overhead
dominate: ``torch.nn.MultiheadAttention`` vs ``gpam.MultiheadAttention`` (softmax, daGPAM).

    python benchmarks/layer_overhead.py [--rounds 7] [--calls 2000]

One thread, process CPU time; E=32, 4 heads, batch 2, 8 tokens, causal. Each round times every
layer back to back (``--calls`` calls each, after a warm-up), without grad and forward+backward;
the fastest round of each (the least disturbed) and its ratio to torch's are printed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

import gpam

E, H, B, L = 32, 4, 2, 8


def _layers() -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(E, H, batch_first=True)
    soft = gpam.MultiheadAttention(E, H, attention="softmax")
    dag = gpam.MultiheadAttention(E, H, attention="dagpam")
    mask = torch.nn.Transformer.generate_square_subsequent_mask(L)
    return {
        "torch": lambda x: ref(x, x, x, need_weights=False, attn_mask=mask, is_causal=True)[0],
        "softmax": lambda x: soft(x, is_causal=True),
        "dagpam": lambda x: dag(x, is_causal=True),
    }


def _per_call_us(fn: Callable[[], object], calls: int) -> float:
    t = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - t) / calls * 1e6


def main(rounds: int, calls: int) -> None:
    torch.set_num_threads(1)
    layers = _layers()
    x = torch.randn(B, L, E)
    modes: dict[str, Callable[[Callable], Callable[[], object]]] = {
        "no grad": lambda f: lambda: f(x),
        "forward+backward": lambda f: lambda: f(x).sum().backward(),
    }
    for mode, wrap in modes.items():
        best: dict[str, float] = {}
        for _ in range(rounds):
            for name, layer in layers.items():
                fn = wrap(layer)
                with torch.set_grad_enabled(mode != "no grad"):
                    _per_call_us(fn, max(1, calls // 20))  # warm-up
                    us = _per_call_us(fn, calls if mode == "no grad" else calls // 4)
                best[name] = min(best.get(name, us), us)
        row = ", ".join(f"{n} {us:.0f} us ({us / best['torch']:.2f}x)" for n, us in best.items())
        print(f"{mode}: {row}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    main(args.rounds, args.calls)
