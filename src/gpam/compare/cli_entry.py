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


def compare_from_args(args: argparse.Namespace) -> int:
    """Run ``gpam compare`` with parsed ``args``; prints the table and the report path."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    task = make_task_from_args(args)
    config = CompareConfig(
        kind=args.kind,
        task=getattr(args, "task", None) or task.name,
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
    results = run_compare(config, task, out, progress=not args.quiet)
    print(format_table(results["summary"]))
    print(f"report: {out / 'report.md'}")
    return 0
