"""`gpam train lm|nmt`: train a language or translation model (argparse only)."""

from __future__ import annotations

import argparse

from gpam.cli._common import (
    add_attention,
    add_budget,
    add_dagpam_options,
    add_device,
    add_model_shape,
    add_out,
    add_seed,
    add_skip_bad_lines,
    add_subcommands,
    add_threads,
    add_tokenizer,
    claim_out,
    default_out,
    positive_int,
    set_threads,
)


def _per_task(g: argparse._ArgumentGroup, nmt: bool):
    """``add(flag, lm_default, nmt_default, help, **kw)``: an option whose default depends on the
    task."""

    def add(flag: str, lm: object, nmt_default: object, text: str, **kw: object) -> None:
        g.add_argument(flag, default=nmt_default if nmt else lm, help=text, **kw)

    return add


def _add_model(p: argparse.ArgumentParser, nmt: bool) -> None:
    g = p.add_argument_group("model")
    add_attention(g)
    g.add_argument(
        "--lam-neg",
        type=float,
        default=None,
        help="daGPAM negative-weight lambda (default: 0.5; 0 with --hf-model)",
    )
    g.add_argument(
        "--lam-pos",
        type=float,
        default=None,
        help="daGPAM positive lambda; giving it makes the attention non-affine (rows sum to "
        "lam_pos - lam_neg; default: affine, lam_pos = 1 + lam_neg)",
    )
    g.add_argument(
        "--learnable-lambda",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="learn lambda per head (default: off; on with --hf-model)",
    )
    add_dagpam_options(g)
    per_task = _per_task(g, nmt)
    layers = "layers per encoder and per decoder" if nmt else "layers"
    add_model_shape(g, 128 if nmt else 256, 3 if nmt else 4, 4, layers_help=layers)
    g.add_argument("--d-ff", type=positive_int, default=None, help="MLP width (default: 4 d_model)")
    g.add_argument("--dropout", type=float, default=0.1, help="dropout")
    per_task("--norm", "pre", "post", "pre- or post-LayerNorm", choices=("pre", "post"))
    per_task("--positions", "learned", "sinusoidal", "position encoding",
             choices=("sinusoidal", "learned", "rotary"))  # fmt: skip


def _add_train(p: argparse.ArgumentParser, nmt: bool) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=positive_int, default=1000, help="optimiser steps")
    add_budget(g)
    per_task = _per_task(g, nmt)
    per_task("--lr", 1e-3, 5e-4, "peak learning rate", type=float)
    per_task("--warmup", 100, 200, "linear warmup steps", type=int)
    per_task("--schedule", "cosine", "inverse_sqrt", "decay after warmup",
             choices=("inverse_sqrt", "cosine", "constant"))  # fmt: skip
    g.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    g.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip, 0 = off")
    g.add_argument("--accum", type=positive_int, default=1, help="gradient accumulation steps")
    g.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    g.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model; the compile time is printed and recorded as compile_s "
        "(default: off)",
    )
    g.add_argument("--eval-every", type=positive_int, default=200, help="validate every N steps")
    g.add_argument("--log-every", type=positive_int, default=10, help="log every N steps")
    g.add_argument(
        "--checkpoint-every", type=positive_int, default=200, help="checkpoint every N steps"
    )
    g.add_argument(
        "--patience",
        type=positive_int,
        default=None,
        help="early stopping: stop after N validations without improvement (default: off)",
    )
    if nmt:
        g.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing")
    g.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint"
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="remove the gpam run already in --out first (without it or --resume a used --out "
        "is refused)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    add_seed(g)
    add_device(g)
    add_threads(g)
    add_out(g)


def _add_data_common(g: argparse._ArgumentGroup, default_tok: str) -> None:
    add_tokenizer(g, default_tok)
    g.add_argument(
        "--vocab-size",
        type=positive_int,
        default=None,
        help="vocabulary cap (default: none; 8000 for bpe)",
    )
    g.add_argument(
        "--min-freq", type=positive_int, default=1, help="word tokenizer: rarer words become <unk>"
    )
    add_skip_bad_lines(g)
    g.add_argument(
        "--hf-dataset",
        default=None,
        help="Hugging Face datasets name instead of files (needs network; default: files)",
    )
    g.add_argument(
        "--hf-config", default=None, help="Hugging Face dataset config name (default: none)"
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``gpam train lm`` and ``gpam train nmt``."""
    tsub = add_subcommands(
        sub,
        "train",
        help="train a language model or a translation model",
        description="Train a Transformer LM or an encoder-decoder NMT model.",
        dest="task",
    )

    lm = tsub.add_parser(
        "lm",
        help="language model on a text file or HF dataset",
        description="Train a decoder-only language model.",
    )
    g = lm.add_argument_group("data")
    g.add_argument(
        "--train", default=None, help="training text file (.gz accepted; default: --hf-dataset)"
    )
    g.add_argument(
        "--valid", default=None, help="validation text file (default: hold out the end of --train)"
    )
    g.add_argument(
        "--holdout-fraction",
        type=float,
        default=0.1,
        help="fraction at the end of --train used for validation",
    )
    g.add_argument("--hf-column", default="text", help="HF dataset text column")
    _add_data_common(g, "char")
    g.add_argument("--seq-len", type=positive_int, default=128, help="context length")
    g.add_argument("--batch-size", type=positive_int, default=32, help="sequences per batch")
    g.add_argument(
        "--max-eval-tokens",
        type=positive_int,
        default=200_000,
        help="cap on validation tokens per evaluation",
    )
    g.add_argument(
        "--hf-model",
        default=None,
        metavar="DIR",
        help="fine-tune this Hugging Face causal LM folder (converted to --attention with "
        "--lam-neg, default 0, and learnable lambdas unless --no-learnable-lambda) on --train "
        "instead of training a gpam model, with the same engine and optimisation options; "
        "needs gpam[hf]; options that describe a gpam model or data split are refused "
        "(default: train a gpam model)",
    )
    _add_model(lm, nmt=False)
    _add_train(lm, nmt=False)
    lm.set_defaults(func=_run_lm, _parser=lm)

    nmt = tsub.add_parser(
        "nmt",
        help="translation model on aligned sentence-pair files",
        description="Train an encoder-decoder translation model.",
    )
    g = nmt.add_argument_group("data")
    g.add_argument(
        "--train-src",
        default=None,
        help="training source sentences (.gz accepted; default: --hf-dataset)",
    )
    g.add_argument(
        "--train-tgt",
        default=None,
        help="training target sentences, line-aligned (default: --hf-dataset)",
    )
    g.add_argument(
        "--valid-src", default=None, help="validation source sentences (default: --hf-dataset's)"
    )
    g.add_argument(
        "--valid-tgt", default=None, help="validation target sentences (default: --hf-dataset's)"
    )
    g.add_argument("--src-lang", default="de", help="source language code for --hf-dataset")
    g.add_argument("--tgt-lang", default="en", help="target language code for --hf-dataset")
    _add_data_common(g, "bpe")
    g.add_argument(
        "--max-tokens",
        type=positive_int,
        default=4096,
        help="source+target tokens per batch",
    )
    g.add_argument(
        "--max-len",
        type=positive_int,
        default=128,
        help="longest sentence in tokens (longer ones are cut)",
    )
    g.add_argument(
        "--valid-limit",
        type=positive_int,
        default=None,
        help="use at most N validation pairs (default: all)",
    )
    _add_model(nmt, nmt=True)
    _add_train(nmt, nmt=True)
    nmt.set_defaults(func=_run_nmt)


def _model_kwargs(a: argparse.Namespace) -> dict:
    kw = {
        "d_model": a.d_model,
        "n_heads": a.n_heads,
        "d_ff": a.d_ff,
        "dropout": a.dropout,
        "lam_neg": 0.5 if a.lam_neg is None else a.lam_neg,
        "learnable_lambda": bool(a.learnable_lambda),
        "norm": a.norm,
        "positions": a.positions,
    }
    if a.lam_pos is not None:  # an explicit positive lambda: the non-affine form
        kw.update(lam_pos=a.lam_pos, affine=False)
    for k in ("neg_query", "neg_init", "lambda_mode"):
        if getattr(a, k) is not None:
            kw[k] = getattr(a, k)
    return kw


def _train_config(a: argparse.Namespace):
    from gpam._namespace import dataclass_from
    from gpam.train.loop import TrainConfig

    return dataclass_from(TrainConfig, a)


def _run_lm(a: argparse.Namespace) -> int:
    if a.hf_model:
        return _run_hf_finetune(a)
    from gpam._namespace import dataclass_from
    from gpam.train.lm import LMDataOptions, train_lm

    d = dataclass_from(LMDataOptions, a, skip_bad=a.skip_bad_lines)
    kw = {**_model_kwargs(a), "attention": a.attention, "n_layers": a.n_layers}
    out = a.out or default_out("gpam-train-lm")
    claim_out(out, a.resume, a.overwrite)
    set_threads(a.threads)
    res = train_lm(d, kw, _train_config(a), out, device=a.device, resume=a.resume, quiet=a.quiet)
    _print_done(res, out, a.skip_bad_lines)
    return 0


def _run_nmt(a: argparse.Namespace) -> int:
    from gpam._namespace import dataclass_from
    from gpam.train.nmt import NMTDataOptions, train_nmt

    d = dataclass_from(NMTDataOptions, a, skip_bad=a.skip_bad_lines)
    kw = {
        **_model_kwargs(a),
        "encoder_attention": a.attention,
        "decoder_attention": a.attention,
        "cross_attention": a.attention,
        "n_encoder_layers": a.n_layers,
        "n_decoder_layers": a.n_layers,
    }
    out = a.out or default_out("gpam-train-nmt")
    claim_out(out, a.resume, a.overwrite)
    set_threads(a.threads)
    res = train_nmt(
        d,
        kw,
        _train_config(a),
        out,
        device=a.device,
        resume=a.resume,
        quiet=a.quiet,
        label_smoothing=a.label_smoothing,
    )
    _print_done(res, out, a.skip_bad_lines)
    return 0


# options `gpam train lm --hf-model` passes on; every other option must keep its default
HF_OPTIONS = {
    "hf_model", "train", "holdout_fraction", "attention", "lam_neg", "learnable_lambda",
    "neg_query", "neg_init", "lambda_mode", "steps", "time_budget", "budget_clock", "lr",
    "warmup", "schedule",
    "weight_decay", "clip", "accum", "bf16", "batch_size", "seq_len", "seed", "device", "out",
    "quiet", "skip_bad_lines", "max_eval_tokens", "threads", "overwrite",
}  # fmt: skip


def _refuse_unused(a: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """ValueError naming every option set away from its default that --hf-model cannot use."""
    bad = []
    for action in parser._actions:
        if not action.option_strings or action.dest in HF_OPTIONS or action.dest == "help":
            continue
        if action.help == argparse.SUPPRESS:  # a hidden alias; its option is checked itself
            continue
        if getattr(a, action.dest, None) != action.default:
            bad.append(action.option_strings[0])
    if bad:
        raise ValueError(
            f"--hf-model fine-tunes a Hugging Face model with its own architecture, tokenizer "
            f"and data split; it does not use {', '.join(sorted(bad))}"
        )


def _run_hf_finetune(a: argparse.Namespace) -> int:
    _refuse_unused(a, a._parser)
    if not a.train:
        raise ValueError("--hf-model needs --train TEXT_FILE")
    from gpam.hf import finetune_text

    out = a.out or default_out("gpam-finetune")
    claim_out(out, False, a.overwrite)
    set_threads(a.threads)
    # eval windows of batch_size x seq_len tokens, up to --max-eval-tokens
    eval_batches = max(1, -(-a.max_eval_tokens // (a.batch_size * a.seq_len)))
    res = finetune_text(
        a.hf_model,
        a.train,
        out,
        attention=a.attention,
        lam_neg=0.0 if a.lam_neg is None else a.lam_neg,
        learnable_lambda=True if a.learnable_lambda is None else a.learnable_lambda,
        **{k: getattr(a, k) for k in ("neg_query", "neg_init", "lambda_mode") if getattr(a, k)},
        val_fraction=a.holdout_fraction,
        device=a.device,
        skip_bad=a.skip_bad_lines,
        steps=a.steps,
        time_budget=a.time_budget,
        budget_clock=a.budget_clock,
        batch_size=a.batch_size,
        seq_len=a.seq_len,
        lr=a.lr,
        warmup=a.warmup,
        schedule=a.schedule,
        weight_decay=a.weight_decay,
        clip=a.clip,
        accum=a.accum,
        bf16=a.bf16,
        eval_batches=eval_batches,
        seed=a.seed,
        progress=not a.quiet,
    )
    before, after = res["val_loss_before"], res["val_loss_after"]
    print(f"done: validation loss {before:.4f} -> {after:.4f} (nats/token); wrote {out}")
    return 0


def _print_done(res: dict, out, skip_bad_lines: bool) -> None:
    if skip_bad_lines:  # say what --skip-bad-lines skipped
        for note in res.get("data_notes", []):
            print(f"data: {note}")
    v = res.get("final_val_loss")
    extra = f", {res['final_val_bpc']:.4f} bits/char" if "final_val_bpc" in res else ""
    vs = f"{v:.4f}" if v is not None else "n/a"
    print(
        f"done: {res['steps']} steps ({res['stopped']}), validation loss {vs}{extra}; wrote {out}"
    )
