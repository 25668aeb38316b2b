"""The library side of ``gpam compare``: turn parsed options into a run and print the table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gpam._namespace import dataclass_from
from gpam.compare.grid import CompareConfig
from gpam.compare.plan_entry import check_options, planned, planned_runner, run_planned
from gpam.compare.report import format_table
from gpam.compare.runner import run_compare
from gpam.compare.settings import TrainSettings


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    """Budget/optimiser settings from the shared ``compare`` options."""
    return TrainSettings(
        steps=args.steps,
        time_budget=args.time_budget,
        budget_clock=args.budget_clock,
        batch_size=getattr(args, "batch_size", 32),
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        grad_clip=args.clip,
        eval_every=args.eval_every or max(1, args.steps // 10),
        eval_batches=getattr(args, "eval_batches", 4),
        max_eval_tokens=getattr(args, "max_eval_tokens", None),
        device=args.device,
        compile=getattr(args, "compile", False),
    )


def make_task_from_args(args: argparse.Namespace) -> Any:
    """The task of ``gpam compare synthetic|lm``: a synthetic task or a ``LMCorpus`` built by
    the same pipeline as ``gpam train lm``."""
    if args.kind == "synthetic":
        from gpam.data.synthetic import make_task

        return make_task(args.task, **dict(args.task_option))
    from gpam.data.lm import LMDataOptions, prepare_lm_corpus

    name, _, config = (args.dataset or "").partition(":")
    d = dataclass_from(
        LMDataOptions,
        args,
        hf_dataset=name or None,
        hf_config=config or None,
        tokenizer=args.tokenizer,
    )
    return prepare_lm_corpus(d)


def nmt_data_from_args(args: argparse.Namespace) -> Any:
    """``gpam.train.nmt.NMTDataOptions`` from the ``compare nmt`` options."""
    from gpam.train.nmt import NMTDataOptions

    name, _, config = (args.dataset or "").partition(":")
    if not args.dataset and not (args.train_src and args.train_tgt):
        raise ValueError("give --train-src/--train-tgt/--valid-src/--valid-tgt or --dataset NAME")
    return dataclass_from(NMTDataOptions, args, hf_dataset=name or None, hf_config=config or None)


def config_from_args(args: argparse.Namespace, task_name: str) -> CompareConfig:
    """The :class:`CompareConfig` of parsed ``compare`` options."""
    dagpam = {
        k: getattr(args, k)
        for k in ("neg_query", "neg_init", "lambda_mode")
        if getattr(args, k, None) is not None
    }
    return CompareConfig(
        kind=args.kind,
        task=getattr(args, "task", None) or task_name,
        task_options=dict(getattr(args, "task_option", []) or []),
        variants=list(args.variants),
        seeds=list(args.seeds),
        lam_negs=list(args.lam_neg),
        match_params=args.match_params,
        d_model=args.d_model,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
        d_ff=args.d_ff,
        dropout=args.dropout,
        attention_layers=args.attention_layers,
        dagpam_options=dagpam,
        train=settings_from_args(args),
        save_models=args.save_models,
    )


def compare_from_args(args: argparse.Namespace) -> int:
    """Run ``gpam compare`` with parsed ``args``; prints the table and the report path."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    check_options(args)
    plan = planned(args)  # --lrs / --target-mde build their own kind (with a test split)
    task = None if args.kind == "nmt" or plan else make_task_from_args(args)
    name = args.dataset or Path(args.train).name if args.kind == "lm" else args.kind
    config = config_from_args(args, task.name if task is not None else name)
    config.validate()
    out = Path(args.out).resolve()
    if getattr(args, "sizes", None):
        return _sizes_from_args(args, config, task, out)
    if plan:
        results = run_planned(args, config, out, make_task_from_args, nmt_data_from_args)
    elif args.kind == "nmt":
        from gpam.compare.nmt import run_compare_nmt

        results = run_compare_nmt(
            config,
            nmt_data_from_args(args),
            out,
            bleu_limit=args.bleu_limit,
            beam_size=args.beam_size,
            label_smoothing=args.label_smoothing,
            progress=not args.quiet,
        )
    else:
        results = run_compare(config, task, out, progress=not args.quiet)
    print(format_table(results["summary"]))
    print(f"report: {out / 'report.md'}")
    return 0


def _sizes_from_args(args: argparse.Namespace, config: CompareConfig, task: Any, out: Path) -> int:
    """``--sizes``: the grid at every size, then the scaling report (prints its tables)."""
    from gpam.compare.kinds import as_kind
    from gpam.compare.scaling import format_multiplier_table, run_sizes, size_configs

    size_configs(config, args.sizes)  # a size that does not fit fails before any data work
    run = None
    if planned(args):  # each size tuned (and/or powered) on its own, scored on the test split
        kind, run = planned_runner(args, config, make_task_from_args, nmt_data_from_args)
    elif args.kind == "nmt":
        from gpam.compare.nmt import NMTKind

        kind = NMTKind(nmt_data_from_args(args), args.bleu_limit, args.beam_size,
                       args.label_smoothing)  # fmt: skip
    else:
        kind = as_kind(task)
    doc = run_sizes(config, kind, out, args.sizes, progress=not args.quiet, run=run)
    if doc.get("multiplier"):
        print(format_multiplier_table(doc["multiplier"]))
    else:
        print(f"no compute multiplier: {doc.get('multiplier_error')}")
    print(f"report: {out / 'scaling.md'}")
    return 0
