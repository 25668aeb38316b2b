"""`gpam generate` (sample from an LM) and `gpam translate` (stdin -> stdout translations)."""

from __future__ import annotations

import argparse
import sys

from gpam.cli._common import add_device, add_model_dir, add_seed, non_negative_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``gpam generate`` and ``gpam translate``."""
    g = sub.add_parser(
        "generate",
        help="sample text from a trained language model",
        description="Sample continuations of a prompt from a `gpam train lm` "
        "model; prints them to stdout.",
    )
    add_model_dir(g)
    g.add_argument("--prompt", default="", help="text to continue (default: empty)")
    g.add_argument(
        "--max-new-tokens", type=positive_int, default=200, help="tokens to sample (default: 200)"
    )
    g.add_argument(
        "--temperature",
        type=non_negative_float,
        default=1.0,
        help="sampling temperature, 0 = greedy (default: 1.0)",
    )
    g.add_argument(
        "--top-k",
        type=positive_int,
        default=None,
        help="sample only from the K most likely tokens (default: all)",
    )
    g.add_argument("--num-samples", type=positive_int, default=1, help="samples (default: 1)")
    add_seed(g)
    add_device(g)
    g.set_defaults(func=_run_generate)

    t = sub.add_parser(
        "translate",
        help="translate sentences from stdin with beam search",
        description="Read source sentences (one per line) from stdin and write "
        "their translations (one per line) to stdout.",
    )
    add_model_dir(t)
    from gpam.cli.evaluate import add_beam

    add_beam(t)
    add_device(t)
    t.set_defaults(func=_run_translate)


def _run_generate(a: argparse.Namespace) -> int:
    from gpam.train.evaluate import generate_text

    for i, s in enumerate(
        generate_text(
            a.model,
            a.prompt,
            max_new_tokens=a.max_new_tokens,
            temperature=a.temperature,
            top_k=a.top_k,
            num_samples=a.num_samples,
            seed=a.seed,
            device=a.device,
        )
    ):
        if a.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        print(s)
    return 0


def _run_translate(a: argparse.Namespace) -> int:
    from gpam.cli.evaluate import beam_options
    from gpam.train.evaluate import translate_stream

    translate_stream(
        a.model,
        sys.stdin,
        sys.stdout,
        **beam_options(a),
        device=a.device,
    )
    return 0
