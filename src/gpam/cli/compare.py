"""`gpam compare synthetic|lm|nmt`: variants x seeds (x lambdas) at equal budget -> report."""

from __future__ import annotations

import argparse
import json

from gpam.cli._common import (
    add_budget,
    add_dagpam_options,
    add_device,
    add_model_shape,
    add_out,
    add_subcommands,
    add_threads,
    add_tokenizer,
    comma_floats,
    comma_ints,
    comma_list,
    default_out,
    non_negative_float,
    positive_float,
    positive_int,
)


def _task_option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text}")
    return value


def _sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        d, sep, n = part.strip().lower().partition("x")
        if not (sep and d.isdigit() and n.isdigit() and int(d) > 0 and int(n) > 0):
            raise argparse.ArgumentTypeError(f"expected D_MODELxLAYERS,... like 64x2, got {part!r}")
        out.append((int(d), int(n)))
    return out


def _add_grid(p: argparse.ArgumentParser, kind: str, steps: int) -> None:
    g = p.add_argument_group("grid")
    g.add_argument(
        "--variants",
        type=comma_list,
        default=["softmax", "dagpam", "diff", "cog"],
        help="attention variants to compare (default: softmax,dagpam,diff,cog); an entry may be "
        "LABEL=VARIANT+KEY=VALUE... to set model options, e.g. "
        "dagpam-head=dagpam+lambda_mode=head",
    )
    g.add_argument(
        "--seeds", type=comma_ints, default=[0, 1, 2], help="seeds, paired across variants"
    )
    g.add_argument(
        "--lam-neg",
        type=comma_floats,
        default=[0.5],
        help="daGPAM lam_neg values; several give one daGPAM row each (default: 0.5)",
    )
    g.add_argument(
        "--match-params",
        action="store_true",
        help="add a softmax with a wider feed-forward for every parameter count above softmax's "
        "in the grid: 'softmax-matched' (one count) or 'softmax-matched-SETTING' (several)",
    )
    add_dagpam_options(g)
    t = p.add_argument_group("learning rate per setting and seeds by power")
    t.add_argument(
        "--lrs",
        type=comma_floats,
        default=None,
        help="learning rates to try per setting on --tune-seeds; the best on validation is "
        "used for every --seeds run and final numbers come from the test split (default: none, "
        "every run at --lr)",
    )
    t.add_argument(
        "--tune-seeds",
        type=comma_ints,
        default=None,
        help="seeds of the --lrs tuning runs (default: 0)",
    )
    t.add_argument(
        "--target-mde",
        type=positive_float,
        default=None,
        help="add paired seeds until every row's MDE80 at equal steps is at most this "
        "(default: none, just --seeds)",
    )
    t.add_argument(
        "--max-seeds",
        type=positive_int,
        default=None,
        help="seed budget of --target-mde (default: 10)",
    )
    b = p.add_argument_group("budget (equal for every run)")
    b.add_argument("--steps", type=positive_int, default=steps, help="training steps per run")
    add_budget(b)
    if kind == "nmt":
        b.add_argument(
            "--max-tokens",
            type=positive_int,
            default=4096,
            help="source+target tokens per batch",
        )
    else:
        b.add_argument("--batch-size", type=positive_int, default=32, help="batch size")
    b.add_argument("--lr", type=positive_float, default=3e-3, help="peak learning rate")
    b.add_argument("--warmup", type=_fraction, default=0.1, help="warmup, a fraction of --steps")
    b.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=0.01,
        help="AdamW weight decay of weight matrices and embeddings",
    )
    b.add_argument(
        "--clip", type=non_negative_float, default=1.0, help="gradient-norm clip, 0 = off"
    )
    b.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile each run's model (compile time reported apart) (default: off)",
    )
    b.add_argument(
        "--eval-every",
        type=positive_int,
        default=None,
        help="validate every N steps (default: steps/10)",
    )
    if kind == "synthetic":
        b.add_argument(
            "--eval-batches", type=positive_int, default=4, help="validation batches of 64"
        )
    if kind == "lm":
        b.add_argument(
            "--max-eval-tokens",
            type=positive_int,
            default=200_000,
            help="validation tokens per evaluation, as gpam eval lm --max-tokens",
        )
    m = p.add_argument_group("model")
    layers = "layers per encoder and per decoder" if kind == "nmt" else "layers"
    add_model_shape(m, 64, 2, 4, layers_help=layers)
    m.add_argument("--d-ff", type=positive_int, default=None, help="MLP width (default: 4 d_model)")
    m.add_argument(
        "--sizes",
        type=_sizes,
        default=None,
        metavar="DxL,...",
        help="model sizes d_model x layers, e.g. 64x2,128x2,192x3 (heads and --d-ff as set): "
        "the grid runs at each size in OUT/size=DxL/, then OUT/scaling.md and "
        "loss_vs_flops.png give loss against training FLOPs and the compute multiplier over "
        "softmax (default: one size, --d-model x --layers)",
    )
    m.add_argument("--dropout", type=_fraction, default=0.0, help="dropout")
    m.add_argument(
        "--attention-layers",
        default="all",
        choices=["all", "auto", "inner"],
        help="which layers use the variant: all (default), inner (first/last softmax), auto "
        "(inner for cog, as in its paper)",
    )
    add_device(p)
    add_threads(p)
    p.add_argument(
        "--save-models",
        action="store_true",
        help="save every trained model (safetensors + tokenizer) under OUT/models/, usable by "
        "gpam eval and gpam generate",
    )
    add_out(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `compare` command to the `gpam` parser."""
    kinds = add_subcommands(
        sub,
        "compare",
        help="compare attention variants over seeds at an equal budget (report.md, results.json)",
        description="Train every variant x seed (x daGPAM lambda) at the same budget with the "
        "gpam training engine and write report.md, results.json and plots: mean ± std, paired "
        "difference to softmax with 95%% CI and p-value, parameters, time per step, peak memory, "
        "learning curves, rank collapse. Rerunning with the same --out reuses finished runs whose "
        "settings match and continues interrupted ones from their last checkpoint.",
        dest="kind",
    )
    s = kinds.add_parser(
        "synthetic",
        help="a built-in synthetic task (no download)",
        description="Compare on a built-in task: recall, copy, reverse, selective-copy, grammar, "
        "listops.",
    )
    s.add_argument(
        "--task",
        default="recall",
        help="recall, copy, reverse, selective-copy, grammar or listops",
    )
    s.add_argument(
        "--task-option",
        type=_task_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option, repeatable, e.g. --task-option max_len=256 for listops (default: "
        "the task's own)",
    )
    _add_grid(s, "synthetic", steps=300)
    s.set_defaults(func=_run)
    lm = kinds.add_parser(
        "lm",
        help="language modelling on your text file or a Hugging Face dataset",
        description="Compare on a text corpus: --train FILE [--valid FILE], or --dataset NAME. "
        "The data pipeline, validation and perplexity are those of gpam train lm / gpam eval lm.",
    )
    src = lm.add_mutually_exclusive_group(required=True)
    src.add_argument("--train", help="training text file (.txt or .gz)")
    src.add_argument(
        "--dataset", help="Hugging Face dataset NAME[:CONFIG], e.g. wikitext:wikitext-2-raw-v1"
    )
    lm.add_argument("--valid", help="validation text file (default: hold out the end of --train)")
    lm.add_argument(
        "--holdout-fraction",
        type=positive_float,
        default=0.1,
        help="fraction at the end of the training text used for validation without --valid",
    )
    lm.add_argument(
        "--test",
        help="test text file for --lrs (default: hold out the end of --train: train/validation/"
        "test = 1-2f/f/f of it with f = --holdout-fraction, or 1-f/-/f with --valid)",
    )
    add_tokenizer(lm, "char")
    lm.add_argument(
        "--vocab-size", type=positive_int, default=None, help="vocabulary cap (default: none)"
    )
    lm.add_argument("--seq-len", type=positive_int, default=128, help="context length")
    lm.add_argument(
        "--max-chars",
        type=positive_int,
        default=None,
        help="read at most N characters per split (default: all)",
    )
    _add_grid(lm, "lm", steps=500)
    lm.set_defaults(func=_run)
    nmt = kinds.add_parser(
        "nmt",
        help="translation on your aligned files or a Hugging Face dataset",
        description="Compare encoder-decoder translation models (the gpam train nmt data and "
        "engine); final metric BLEU on the first --bleu-limit validation pairs (or validation "
        "perplexity with --bleu-limit 0).",
    )
    nmt.add_argument(
        "--train-src", help="training source file, one sentence per line (default: --dataset)"
    )
    nmt.add_argument(
        "--train-tgt", help="training target file, aligned with --train-src (default: --dataset)"
    )
    nmt.add_argument("--valid-src", help="validation source file (default: --dataset's)")
    nmt.add_argument("--valid-tgt", help="validation target file (default: --dataset's)")
    nmt.add_argument(
        "--test-src", help="test source file for --lrs (default: the last 10%% of training pairs)"
    )
    nmt.add_argument("--test-tgt", help="test target file for --lrs (default: as --test-src)")
    nmt.add_argument(
        "--dataset",
        help="Hugging Face dataset NAME[:CONFIG], e.g. iwslt2017:... (default: the files)",
    )
    nmt.add_argument("--src-lang", default="de", help="source language key for --dataset")
    nmt.add_argument("--tgt-lang", default="en", help="target language key for --dataset")
    add_tokenizer(nmt, "bpe")
    nmt.add_argument(
        "--vocab-size",
        type=positive_int,
        default=None,
        help="vocabulary cap (default: none; 8000 for bpe)",
    )
    nmt.add_argument("--max-len", type=positive_int, default=64, help="max tokens per side")
    nmt.add_argument("--label-smoothing", type=_fraction, default=0.1, help="label smoothing")
    nmt.add_argument(
        "--bleu-limit",
        type=int,
        default=200,
        help="validation pairs scored with BLEU, 0 = use validation perplexity",
    )
    nmt.add_argument("--beam-size", type=positive_int, default=1, help="beam for BLEU")
    _add_grid(nmt, "nmt", steps=500)
    nmt.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gpam.compare.cli_entry import compare_from_args

    args.out = args.out or default_out(f"gpam-compare-{args.kind}")
    return compare_from_args(args)
