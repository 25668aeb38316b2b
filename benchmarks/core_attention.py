"""Attention-core time and peak memory (the `gpam bench` closing-note configuration).

    python benchmarks/core_attention.py [OUT_DIR]

Same library code as ``gpam bench --lengths 1024,2048 --methods sdpa,softmax,dagpam,...``.
"""

from __future__ import annotations

import sys

from gpam.bench import run_bench

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "bench-core"
    paths = run_bench(
        out,
        lengths=(1024, 2048),
        batch=2,
        heads=8,
        head_dim=64,
        causal=(True,),
        methods=("sdpa", "softmax", "dagpam", "dagpam_naive", "dagpam_1call", "dagpam_fused"),
        repeats=5,
        memory_lengths=(1024, 2048, 4096, 8192),
        command="python benchmarks/core_attention.py " + out,
    )
    print(paths["report"])
