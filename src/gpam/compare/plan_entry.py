"""``gpam compare ... --lrs`` / ``--target-mde``: parsed options -> the kind with its test split,
then :func:`gpam.compare.tuning.run_tuned` and/or :func:`gpam.compare.power.run_to_power`."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpam.compare.grid import CompareConfig

NMT_TEST_FRACTION = 0.1  # of the training pairs, the test split without --test-src/--test-tgt


TUNE_SEEDS = [0]  # --tune-seeds default
MAX_SEEDS = 10  # --max-seeds default


def check_options(args: argparse.Namespace) -> None:
    """ValueError naming an option given without the one it belongs to (it would do nothing)."""
    lone = [
        (opt, dest, needs)
        for opt, dest, needs in (
            ("--tune-seeds", "tune_seeds", "lrs"),
            ("--test", "test", "lrs"),
            ("--test-src", "test_src", "lrs"),
            ("--test-tgt", "test_tgt", "lrs"),
            ("--max-seeds", "max_seeds", "target_mde"),
        )
        if getattr(args, dest, None) is not None and not getattr(args, needs, None)
    ]
    if lone:
        opt, _, needs = lone[0]
        raise ValueError(f"{opt} is used with --{needs.replace('_', '-')} only")


def planned(args: argparse.Namespace) -> bool:
    """Whether the options ask for learning-rate tuning or seeds by power."""
    return bool(getattr(args, "lrs", None) or getattr(args, "target_mde", None))


def kind_from_args(
    args: argparse.Namespace,
    config: CompareConfig,
    test: bool,
    make_task: Callable[[argparse.Namespace], Any],
    nmt_data: Callable[[argparse.Namespace], Any],
) -> Any:
    """The comparison kind of ``args``; with ``test``, scored on a test split. ``make_task``
    and ``nmt_data``: the task and translation data of parsed options
    (:mod:`gpam.compare.cli_entry`'s)."""
    from gpam.compare import test_split
    from gpam.compare.kinds import as_kind

    if args.kind == "nmt":
        from gpam.compare.nmt import NMTKind

        held = None
        if test:
            held = _nmt_test_pairs(args) or NMT_TEST_FRACTION
        kind = NMTKind(nmt_data(args), args.bleu_limit, args.beam_size, args.label_smoothing, held)
        return test_split.TestSplitKind(kind, kind.test_metric, kind.test_info()) if test else kind
    if args.kind == "lm" and test:
        from gpam._namespace import dataclass_from
        from gpam.data.lm import LMDataOptions

        name, _, cfg = (args.dataset or "").partition(":")
        d = dataclass_from(
            LMDataOptions, args, hf_dataset=name or None, hf_config=cfg or None,
            tokenizer=args.tokenizer,
        )  # fmt: skip
        corpus, test_ids = test_split.prepare_lm_test_corpus(d, args.test)
        t = config.train
        return test_split.lm_test_kind(
            as_kind(corpus), test_ids, t.batch_size, t.max_eval_tokens, corpus.notes[-1]
        )
    kind = as_kind(make_task(args))
    if test and args.kind == "synthetic":
        t = config.train
        return test_split.synthetic_test_kind(kind, t.eval_batches, t.eval_batch_size)
    return kind


def _nmt_test_pairs(args: argparse.Namespace) -> list | None:
    if bool(args.test_src) != bool(args.test_tgt):
        raise ValueError("give both --test-src and --test-tgt, or neither")
    if not args.test_src:
        return None
    from gpam.data.pairs import read_pairs

    pairs, _ = read_pairs(args.test_src, args.test_tgt, skip_bad=getattr(args, "skip_bad", False))
    return pairs


def planned_runner(
    args: argparse.Namespace,
    config: CompareConfig,
    make_task: Callable[[argparse.Namespace], Any],
    nmt_data: Callable[[argparse.Namespace], Any],
) -> tuple[Any, Callable[..., dict[str, Any]]]:
    """``(kind, run)`` of ``--lrs`` / ``--target-mde``: the kind (with its test split under
    ``--lrs``) and ``run(config, kind, out, progress) -> results`` that tunes and/or adds seeds
    by power, as asked; every option is checked before any data is read (``make_task``,
    ``nmt_data``: as :func:`kind_from_args`). ``--sizes`` calls ``run`` once per size."""
    from gpam.compare.power import check_power, run_to_power
    from gpam.compare.runner import run_grid
    from gpam.compare.tuning import check_tuning, run_tuned

    check_options(args)
    tune_seeds = args.tune_seeds or TUNE_SEEDS
    max_seeds = args.max_seeds or MAX_SEEDS
    if args.lrs:
        check_tuning(args.lrs, tune_seeds)
    if args.target_mde:
        check_power(args.target_mde, max_seeds, len(config.seeds))
    kind = kind_from_args(args, config, bool(args.lrs), make_task, nmt_data)
    final: Callable[..., dict[str, Any]] = run_grid
    if args.target_mde:
        final = functools.partial(run_to_power, target_mde=args.target_mde, max_seeds=max_seeds)
    if not args.lrs:
        return kind, final
    lrs = list(args.lrs)

    def tuned(c: CompareConfig, k: Any, out: Path, progress: bool = True) -> dict[str, Any]:
        return run_tuned(c, k, out, lrs, tune_seeds, progress, final=final)

    return kind, tuned


def run_planned(
    args: argparse.Namespace,
    config: CompareConfig,
    out: Path,
    make_task: Callable[[argparse.Namespace], Any],
    nmt_data: Callable[[argparse.Namespace], Any],
) -> dict[str, Any]:
    """Tune (``--lrs``) and/or add seeds by power (``--target-mde``), as asked (``make_task``,
    ``nmt_data``: as :func:`kind_from_args`)."""
    kind, run = planned_runner(args, config, make_task, nmt_data)
    return run(config, kind, out, not args.quiet)
