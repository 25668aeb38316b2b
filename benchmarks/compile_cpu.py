"""Eager vs ``torch.compile`` LM training steps (issue 19 item 5): ms/step and compile time.

Each workload is one optimiser step (forward, cross-entropy, backward, AdamW) of a
``TransformerLM`` (``gpam.bench.models``' LM workload, the one ``gpam bench --models
[--compile]`` times). Eager and compiled models of one size and attention are timed round-robin
on the chosen clock after warm-up rounds; the compile time is the wall time of the compiled
model's first forward and backward. Writes a Markdown table to stdout.

    TORCHINDUCTOR_COMPILE_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/compile_cpu.py
"""

from __future__ import annotations

import argparse
import statistics

import torch

from gpam.bench.measure import interleaved_times
from gpam.bench.models import ModelBenchConfig, _lm_workload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64x2,128x4", help="d_model x layers, comma separated")
    ap.add_argument("--attentions", default="softmax,dagpam", help="variants, comma separated")
    ap.add_argument("--seq", type=int, default=128, help="sequence length (default: 128)")
    ap.add_argument("--batch", type=int, default=8, help="batch size (default: 8)")
    ap.add_argument("--vocab", type=int, default=256, help="vocabulary (default: 256)")
    ap.add_argument("--repeats", type=int, default=20, help="timed steps each (default: 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="cpu", help="(default: cpu)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(
        f"torch {torch.__version__}, {a.threads} thread(s), {a.clock} clock, batch {a.batch}, "
        f"seq {a.seq}, vocab {a.vocab}, {a.repeats} timed steps after {a.warmup} warm-up"
    )
    print(
        "| d_model x layers | attention | eager ms/step | compiled ms/step | speed-up "
        "| compile s |\n| --- | --- | ---: | ---: | ---: | ---: |"
    )
    for size in a.sizes.split(","):
        d, n = (int(x) for x in size.split("x"))
        for att in a.attentions.split(","):
            fns, comp = {}, None
            for compiled in (False, True):
                cfg = ModelBenchConfig(
                    vocab=a.vocab,
                    d_model=d,
                    n_layers=n,
                    n_heads=4,
                    lm_batch=a.batch,
                    lm_seq=a.seq,
                    compile=compiled,
                )
                step, _, cs = _lm_workload(cfg, att, torch.device("cpu"))
                fns["compiled" if compiled else "eager"] = step
                comp = cs if compiled else comp
            t = interleaved_times(
                fns, repeats=a.repeats, warmup=a.warmup, device=torch.device("cpu"), clock=a.clock
            )
            e, c = (1000 * statistics.median(t[k]) for k in ("eager", "compiled"))
            print(
                f"| {d}x{n} | {att} | {e:.1f} | {c:.1f} | {e / c:.2f}x | {comp:.0f} |", flush=True
            )


if __name__ == "__main__":
    main()
