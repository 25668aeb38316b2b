"""Every variant of gpam.VARIANTS (plus SDPA, naive and fused daGPAM), forward and
forward+backward, causal and not, over L = 256..1024 (quadratic variants get slow beyond).

    python benchmarks/all_variants.py [OUT_DIR]
"""

from __future__ import annotations

import sys

from gpam.bench import run_bench

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "bench-variants"
    paths = run_bench(
        out,
        lengths=(256, 512, 1024),
        causal=(True, False),
        repeats=3,
        memory_lengths=(512, 1024, 2048),
        command="python benchmarks/all_variants.py " + out,
    )
    print(paths["report"])
