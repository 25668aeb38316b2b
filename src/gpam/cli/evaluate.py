"""`gpam eval lm|nmt`: perplexity / bits per character, or BLEU / chrF with beam search."""

from __future__ import annotations

import argparse

from gpam.cli._common import (
    add_device,
    add_model_dir,
    add_out,
    add_skip_bad_lines,
    add_subcommands,
    add_threads,
    default_out,
    positive_int,
    set_threads,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``gpam eval lm`` and ``gpam eval nmt``."""
    tsub = add_subcommands(
        sub,
        "eval",
        help="evaluate a trained LM (perplexity) or NMT model (BLEU)",
        description="Evaluate a model written by `gpam train`.",
        dest="task",
    )

    lm = tsub.add_parser(
        "lm",
        help="perplexity (and bits/char) on a held-out text file",
        description="Perplexity and, for character models, bits per character.",
    )
    add_model_dir(lm)
    lm.add_argument("--text", required=True, help="held-out text file (.gz accepted)")
    lm.add_argument(
        "--last-fraction",
        type=float,
        default=None,
        help="evaluate only the last FRACTION of the file, e.g. 0.1 (default: all of it)",
    )
    lm.add_argument(
        "--seq-len",
        type=positive_int,
        default=None,
        help="context window (default: the model's max_len)",
    )
    lm.add_argument("--batch-size", type=positive_int, default=16, help="windows per batch")
    lm.add_argument(
        "--max-tokens",
        type=positive_int,
        default=None,
        help="evaluate at most this many tokens (default: all)",
    )
    add_skip_bad_lines(lm)
    add_device(lm)
    add_threads(lm)
    add_out(lm)
    lm.set_defaults(func=_run_lm)

    nmt = tsub.add_parser(
        "nmt",
        help="BLEU and chrF (sacrebleu) of beam-search translations",
        description="Translate a source file with beam search and score it "
        "against references with sacrebleu BLEU and chrF.",
    )
    add_model_dir(nmt)
    nmt.add_argument("--src", required=True, help="source sentences, one per line (.gz ok)")
    nmt.add_argument("--ref", required=True, help="reference translations, line-aligned")
    add_beam(nmt)
    nmt.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="score only the first N sentences (default: all)",
    )
    add_skip_bad_lines(nmt)
    add_device(nmt)
    add_threads(nmt)
    add_out(nmt)
    nmt.set_defaults(func=_run_nmt)


def add_beam(p: argparse.ArgumentParser) -> None:
    """Beam-search options shared with `gpam translate`."""
    p.add_argument("--beam-size", type=positive_int, default=4, help="beam size (default: 4)")
    p.add_argument(
        "--length-penalty",
        type=float,
        default=1.0,
        help="GNMT length-penalty exponent, 0 = none (default: 1.0)",
    )
    p.add_argument(
        "--max-len",
        type=positive_int,
        default=None,
        help="longest translation in tokens (default: 2 x source + 10)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="sentences per beam-search batch (default: 32)",
    )


def beam_options(a: argparse.Namespace) -> dict[str, object]:
    """The values of the :func:`add_beam` options, as keyword arguments of the beam search."""
    return {k: getattr(a, k) for k in ("beam_size", "length_penalty", "max_len", "batch_size")}


def _print_skipped(res: dict, skip_bad_lines: bool) -> None:
    """With --skip-bad-lines, say how many lines it skipped."""
    read = res.get("read") or {}
    if skip_bad_lines and "bad_utf8_skipped" in read:
        print(f"skipped {read['bad_utf8_skipped']} non-UTF-8 line(s) (--skip-bad-lines)")


def _run_lm(a: argparse.Namespace) -> int:
    from gpam.train.evaluate import run_eval_lm

    out = a.out or default_out("gpam-eval-lm")
    set_threads(a.threads)
    res = run_eval_lm(
        a.model,
        a.text,
        out,
        last_fraction=a.last_fraction,
        seq_len=a.seq_len,
        batch_size=a.batch_size,
        max_tokens=a.max_tokens,
        device=a.device,
        skip_bad=a.skip_bad_lines,
    )
    _print_skipped(res, a.skip_bad_lines)
    bpc = f", {res['bits_per_char']:.4f} bits/char" if "bits_per_char" in res else ""
    print(
        f"loss {res['loss']:.4f} nats/token, perplexity {res['perplexity']:.3f}{bpc} "
        f"({res['tokens']} tokens); wrote {out}"
    )
    return 0


def _run_nmt(a: argparse.Namespace) -> int:
    from gpam.train.evaluate import run_eval_nmt

    out = a.out or default_out("gpam-eval-nmt")
    set_threads(a.threads)
    res = run_eval_nmt(
        a.model,
        a.src,
        a.ref,
        out,
        **beam_options(a),
        limit=a.limit,
        device=a.device,
        skip_bad=a.skip_bad_lines,
    )
    _print_skipped(res, a.skip_bad_lines)
    print(
        f"BLEU {res['bleu']:.2f}, chrF {res['chrf']:.2f} on {res['sentences']} sentences; "
        f"wrote {out}"
    )
    return 0
