"""Whole models, softmax vs daGPAM: LM training tokens/s and NMT greedy / beam decoding
sentences/s, with the overhead the FLOP count predicts next to the measured one.

    python benchmarks/whole_models.py [OUT_DIR]
"""

from __future__ import annotations

import sys

from gpam.bench import run_bench

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "bench-models"
    paths = run_bench(
        out,
        lengths=(),
        memory_lengths=(),
        models=True,
        model_repeats=5,
        command="python benchmarks/whole_models.py " + out,
    )
    print(paths["report"])
