"""gpam.bench: speed and memory benchmarks of the attention core and of whole models.

``run_bench(out, ...)`` is what ``gpam bench`` and ``benchmarks/*.py`` call; the parts are
:func:`run_core_bench` (time + peak memory per method), :func:`run_model_bench` (LM training,
NMT decoding) and :func:`write_report` (``bench.json``, ``report.md``, PNG plots).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from gpam.bench.core import CoreBenchConfig, run_core_bench
from gpam.bench.methods import all_methods, get_method
from gpam.bench.models import ModelBenchConfig, run_model_bench
from gpam.bench.report import write_report


def run_bench(
    out: str | Path,
    *,
    lengths: Sequence[int] = (256, 512, 1024, 2048),
    batch: int = 2,
    heads: int = 8,
    kv_heads: int | None = None,
    head_dim: int = 64,
    dtypes: Sequence[str] = ("float32",),
    causal: Sequence[bool] = (True,),
    passes: Sequence[str] = ("fwd", "fwdbwd"),
    methods: Sequence[str] | None = None,
    repeats: int = 5,
    warmup: int = 1,
    lam: float = 0.5,
    memory_lengths: Sequence[int] = (1024, 2048, 4096, 8192),
    memory_batch: int = 1,
    memory_heads: int = 2,
    memory_kv_heads: int | None = None,
    max_quadratic_gb: float = 6.0,
    models: bool = False,
    model_config: ModelBenchConfig | None = None,
    model_repeats: int = 5,
    model_compile: bool = False,
    threads: int | None = None,
    device: str = "cpu",
    clock: str = "wall",
    seed: int = 0,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Path]:
    """Run the core (and optionally whole-model) benchmark and write the report into ``out``."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        torch.set_num_threads(threads)
    cfg = CoreBenchConfig(
        lengths=tuple(lengths),
        batch=batch,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        dtypes=tuple(dtypes),
        causal=tuple(causal),
        passes=tuple(passes),
        methods=tuple(methods) if methods is not None else all_methods(),
        repeats=repeats,
        warmup=warmup,
        lam=lam,
        memory_lengths=tuple(memory_lengths),
        memory_batch=memory_batch,
        memory_heads=memory_heads,
        memory_kv_heads=memory_kv_heads,
        max_quadratic_gb=max_quadratic_gb,
        device=device,
        clock=clock,
        seed=seed,
    )
    cfg.validate()
    if not lengths and not memory_lengths and not models:
        raise ValueError("lengths and memory_lengths are empty and models is off: nothing to run")
    result = run_core_bench(cfg, progress=progress)
    if models:
        mcfg = model_config or ModelBenchConfig(
            repeats=model_repeats, device=device, clock=clock, seed=seed, compile=model_compile
        )
        result["models"] = run_model_bench(mcfg, progress=progress)
        result["models_config"] = vars(mcfg) | {"attentions": list(mcfg.attentions)}
        result["models_note"] = (
            "Overheads: median paired time ratio - 1 vs the first attention (softmax); "
            "FLOP-predicted: torch.utils.flop_counter FLOPs ratio - 1 (SDPA counted as full "
            "L x L for both, causal or not)."
            + (
                " LM training with torch.compile (compile_s: the first forward and backward, "
                "compilation included); decoding stays eager."
                if mcfg.compile
                else ""
            )
        )
    if command:
        result["command"] = command
    return write_report(result, Path(out), command=command)


__all__ = [
    "CoreBenchConfig",
    "ModelBenchConfig",
    "all_methods",
    "get_method",
    "run_bench",
    "run_core_bench",
    "run_model_bench",
    "write_report",
]
