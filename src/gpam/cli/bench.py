"""`gpam bench`: speed and memory of the attention core (every variant) and of whole models."""

from __future__ import annotations

import argparse
import shlex
import sys

from gpam.cli._common import (
    add_alias,
    add_device,
    add_out,
    add_seed,
    add_threads,
    comma_ints,
    comma_list,
    default_out,
    positive_int,
)


def _causal(text: str) -> list[bool]:
    table = {"true": [True], "false": [False], "both": [True, False]}
    if text not in table:
        raise argparse.ArgumentTypeError(f"expected true, false or both, got {text!r}")
    return table[text]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `bench` command to the `gpam` parser."""
    p = sub.add_parser(
        "bench",
        help="time and peak memory of the attention core and whole models",
        description="Forward and forward+backward time and peak memory of every attention "
        "variant, a naive explicit daGPAM and softmax F.scaled_dot_product_attention (the "
        "baseline of every ratio, timed in the same interleaved loop); optionally LM training "
        "tokens/s and NMT decoding sentences/s. Writes bench.json, report.md and PNG plots.",
    )
    p.add_argument(
        "--lengths",
        type=comma_ints,
        default=[256, 512, 1024, 2048],
        help="sequence lengths timed (default: 256,512,1024,2048; up to 8192)",
    )
    a = p.add_argument("--batch-size", type=positive_int, default=2, help="batch size for timing")
    add_alias(p, a, "--batch")
    a = p.add_argument(
        "--heads", dest="n_heads", metavar="HEADS", type=positive_int, default=8, help="heads"
    )
    add_alias(p, a, "--n-heads")
    p.add_argument(
        "--kv-heads",
        type=positive_int,
        default=None,
        help="key/value heads shared by the query heads (grouped-query attention, a divisor "
        "of --heads) (default: as many as --heads)",
    )
    p.add_argument("--head-dim", type=positive_int, default=64, help="head dimension")
    p.add_argument(
        "--dtypes",
        type=comma_list,
        default=["float32"],
        help="float32, float16 and/or bfloat16 (default: float32)",
    )
    p.add_argument(
        "--causal", type=_causal, default=[True], help="true, false or both (default: true)"
    )
    p.add_argument(
        "--passes",
        type=comma_list,
        default=["fwd", "fwdbwd"],
        help="fwd and/or fwdbwd (default: fwd,fwdbwd)",
    )
    p.add_argument(
        "--methods",
        type=comma_list,
        default=None,
        help="methods to measure, sdpa required (default: sdpa, every variant of gpam.VARIANTS, "
        "then dagpam_token, dagpam_naive, dagpam_1call and dagpam_fused)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed rounds, median (default: 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default: 1)")
    p.add_argument("--lam-neg", type=float, default=0.5, help="daGPAM lam_neg (default: 0.5)")
    p.add_argument(
        "--memory-lengths",
        type=comma_ints,
        default=[1024, 2048, 4096, 8192],
        help="lengths for forward+backward peak memory; 'none' via --no-memory "
        "(default: 1024,2048,4096,8192)",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    p.add_argument("--no-time", action="store_true", help="skip the core timing grid")
    p.add_argument("--memory-batch", type=int, default=1, help="batch for memory (default: 1)")
    p.add_argument("--memory-heads", type=int, default=2, help="heads for memory (default: 2)")
    p.add_argument(
        "--memory-kv-heads",
        type=positive_int,
        default=None,
        help="key/value heads for memory, a divisor of --memory-heads (default: as many as "
        "--memory-heads)",
    )
    p.add_argument(
        "--max-quadratic-gb",
        type=float,
        default=6.0,
        help="skip L x L methods in the memory run beyond about this many GiB (default: 6)",
    )
    p.add_argument(
        "--models",
        action="store_true",
        help="also measure whole models: LM training tokens/s, NMT greedy/beam "
        "decoding sentences/s, softmax vs dagpam, with FLOP-predicted overheads",
    )
    p.add_argument(
        "--model-repeats", type=int, default=5, help="timed rounds per model workload (default: 5)"
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="--models: torch.compile the LM training models (the compile time is reported; "
        "decoding stays eager) (default: off, eager)",
    )
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time, robust on a shared "
        "machine (use with --threads 1) (default: wall)",
    )
    add_threads(p)
    add_device(p)
    add_seed(p)
    add_out(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gpam.bench import run_bench
    from gpam.bench.methods import all_methods

    out = args.out or default_out("gpam-bench")
    paths = run_bench(
        out,
        lengths=[] if args.no_time else args.lengths,
        batch=args.batch_size,
        heads=args.n_heads,
        kv_heads=args.kv_heads,
        head_dim=args.head_dim,
        dtypes=args.dtypes,
        causal=args.causal,
        passes=args.passes,
        methods=args.methods or list(all_methods()),
        repeats=args.repeats,
        warmup=args.warmup,
        lam=args.lam_neg,
        memory_lengths=[] if args.no_memory else args.memory_lengths,
        memory_batch=args.memory_batch,
        memory_heads=args.memory_heads,
        memory_kv_heads=args.memory_kv_heads,
        max_quadratic_gb=args.max_quadratic_gb,
        models=args.models,
        model_repeats=args.model_repeats,
        model_compile=args.compile,
        threads=args.threads,
        device=args.device,
        clock=args.clock,
        seed=args.seed,
        progress=not args.quiet,
        command="gpam " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else None,
    )
    print(paths["report"])
    return 0
