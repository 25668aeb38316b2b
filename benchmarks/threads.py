"""Training-step time of a tiny daGPAM LM at each torch thread count, to see oversubscription.

    python benchmarks/threads.py [THREADS ...]      (default: 1 2 1 2)

Wall clock, 5 untimed steps then 5 rounds of 20 steps; prints the median, min and max ms/step of
the rounds for each thread count (repeated counts show the machine's drift).
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
import torch.nn.functional as F

from gpam.models import LMConfig, TransformerLM

VOCAB, SEQ, BATCH = 65, 64, 16


def ms_per_step(threads: int, rounds: int = 5, steps: int = 20) -> list[float]:
    """ms/step of each timed round of AdamW training steps at ``threads`` torch threads."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = LMConfig(VOCAB, d_model=64, n_layers=2, n_heads=4, max_len=SEQ, attention="dagpam")
    model = TransformerLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randint(0, VOCAB, (BATCH, SEQ + 1))

    def step() -> None:
        out = model(x[:, :-1])
        logits = out if isinstance(out, torch.Tensor) else out[0]
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - start) / steps * 1000)
    return times


if __name__ == "__main__":
    for n in [int(a) for a in sys.argv[1:]] or [1, 2, 1, 2]:
        t = ms_per_step(n)
        print(
            f"{n} thread(s): {statistics.median(t):.1f} ms/step "
            f"(min {min(t):.1f}, max {max(t):.1f})",
            flush=True,
        )
