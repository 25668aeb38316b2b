"""The library side of ``gpam compare``: turn parsed options into a run and print the table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gpam.compare.report import format_table
from gpam.compare.runner import CompareConfig, run_compare
from gpam.compare.trainer import TrainSettings


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    """Budget/optimiser settings from the shared ``compare`` options."""
    return TrainSettings(
        steps=args.steps,
        time_budget=args.time_budget,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_every=args.eval_every or max(1, args.steps // 10),
        eval_batches=args.eval_batches,
        device=args.device,
    )


def make_task_from_args(args: argparse.Namespace) -> Any:
    """The task of ``gpam compare synthetic|lm``."""
    if args.kind == "synthetic":
        from gpam.data.synthetic import make_task

        return make_task(args.task, **dict(args.task_option))
    from gpam.compare.corpus import text_task_from_files, text_task_from_hf

    kw = dict(seq_len=args.seq_len, level=args.level)
    if args.dataset:
        name, _, config = args.dataset.partition(":")
        return text_task_from_hf(name, config or None, max_chars=args.max_chars, **kw)
    return text_task_from_files(args.train, args.valid, max_chars=args.max_chars, **kw)


def nmt_data_from_args(args: argparse.Namespace) -> Any:
    """``gpam.train.nmt.NMTDataOptions`` from the ``compare nmt`` options."""
    from gpam.train.nmt import NMTDataOptions

    name, _, config = (args.dataset or "").partition(":")
    if not args.dataset and not (args.train_src and args.train_tgt):
        raise ValueError("give --train-src/--train-tgt/--valid-src/--valid-tgt or --dataset NAME")
    return NMTDataOptions(
        train_src=args.train_src,
        train_tgt=args.train_tgt,
        valid_src=args.valid_src,
        valid_tgt=args.valid_tgt,
        hf_dataset=name or None,
        hf_config=config or None,
        src_lang=args.src_lang,
        tgt_lang=args.tgt_lang,
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        max_len=args.max_len,
    )


def compare_from_args(args: argparse.Namespace) -> int:
    """Run ``gpam compare`` with parsed ``args``; prints the table and the report path."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    task = None if args.kind == "nmt" else make_task_from_args(args)
    config = CompareConfig(
        kind=args.kind,
        task=getattr(args, "task", None) or (task.name if task else "nmt"),
        variants=list(args.variants),
        seeds=list(args.seeds),
        lam_negs=list(args.lam_neg),
        match_params=args.match_params,
        d_model=args.d_model,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
        attention_layers=args.attention_layers,
        train=settings_from_args(args),
        save_models=args.save_models,
    )
    out = Path(args.out).resolve()
    if args.kind == "nmt":
        from gpam.compare.nmt import run_compare_nmt

        results = run_compare_nmt(
            config,
            nmt_data_from_args(args),
            out,
            bleu_limit=args.bleu_limit,
            beam_size=args.beam_size,
            progress=not args.quiet,
        )
    else:
        results = run_compare(config, task, out, progress=not args.quiet)
    print(format_table(results["summary"]))
    print(f"report: {out / 'report.md'}")
    return 0
