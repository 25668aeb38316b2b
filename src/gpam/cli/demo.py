"""`gpam demo`: the dilemma across the logit scale, then a short compare on built-in data."""

from __future__ import annotations

import argparse

from gpam.cli._common import add_device, add_out, add_threads, default_out


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `demo` command to the `gpam` parser."""
    p = sub.add_parser(
        "demo",
        help="the main job on built-in data: rank collapse vs saturation across the logit "
        "scale, then softmax vs daGPAM vs Cog (~1.5 min of CPU)",
        description="Measures, for softmax, daGPAM (lam_neg 1), centered, diff and Cog "
        "attention, how a 12-layer stack's rank collapse and its attention Jacobian change as "
        "W_Q, W_K grow (a computed sentence per setting), then trains softmax, daGPAM and Cog "
        "attention on a built-in associative-recall task over 3 seeds, prints the tables and "
        "writes report.md (no network needed).",
    )
    p.add_argument(
        "--quick", action="store_true", help="a seconds-long smoke test (tiny budget; for CI)"
    )
    add_threads(p, default=1)
    add_device(p)
    add_out(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gpam.compare.demo import DemoSettings, run_demo

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    settings.device = args.device
    settings.threads = args.threads
    run_demo(args.out or default_out("gpam-demo"), settings, progress=not args.quiet)
    return 0
