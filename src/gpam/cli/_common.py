"""Options shared by several commands."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path


def add_subcommands(
    sub: argparse._SubParsersAction, name: str, help: str, description: str, dest: str
) -> argparse._SubParsersAction:
    """``gpam NAME SUBCOMMAND``: add command ``name`` whose required sub-command is stored in
    ``dest`` (shown as ``DEST`` in usage); returns the action to add the sub-commands to."""
    p = sub.add_parser(name, help=help, description=description)
    subcommands = p.add_subparsers(dest=dest, metavar=dest.upper())
    subcommands.required = True
    return subcommands


def add_model_dir(parser: argparse.ArgumentParser) -> None:
    """``--model``: a trained model to load (``gpam eval``, ``generate``, ``translate``)."""
    parser.add_argument(
        "--model",
        required=True,
        help="training --out folder, its model/ folder, or a checkpoint folder",
    )


def add_skip_bad_lines(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--skip-bad-lines``: skip non-UTF-8 lines of text files instead of stopping."""
    parser.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="skip (and count) non-UTF-8 lines instead of stopping with an error",
    )


def add_out(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--out DIR``: where the command writes its JSON, PNG plots and report.md."""
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(default) if default else None,
        help="output folder for *.json, *.png and report.md"
        + (f" (default: {default})" if default else " (default: a new timestamped folder)"),
    )


def default_out(prefix: str) -> Path:
    """A new timestamped folder under the current directory, e.g. ``gpam-demo-20261122-101500``."""
    return Path(f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device``: torch device string."""
    parser.add_argument(
        "--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)"
    )


def add_seed(parser: argparse.ArgumentParser, default: int = 0) -> None:
    """``--seed``: base random seed."""
    parser.add_argument(
        "--seed", type=int, default=default, help=f"random seed (default: {default})"
    )


def add_budget(group: argparse._ArgumentGroup) -> None:
    """``--time-budget`` and ``--budget-clock`` (the engine's time budget)."""
    group.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="stop after this much training time instead of a step count (--steps becomes a "
        "cap); validation and checkpoints are not counted, cosine decays over it, and under "
        "torchrun rank 0's clock decides",
    )
    group.add_argument(
        "--budget-clock",
        choices=("wall", "cpu", "steps"),
        default="wall",
        help="what --time-budget counts: wall-clock seconds, this process's CPU seconds "
        "(fairer on a shared machine) or optimiser steps (deterministic; default: wall)",
    )


def add_dagpam_options(group: argparse._ArgumentGroup) -> None:
    """``--neg-query``, ``--neg-init``, ``--lambda-mode``: daGPAM settings of the model config
    (default: the model's own), choices from ``gpam.nn.multihead``."""
    from gpam.nn.multihead import LAMBDA_MODES, NEG_INITS, NEG_QUERIES

    for name, choices, what in (
        ("--neg-query", NEG_QUERIES, "negative query map"),
        ("--neg-init", NEG_INITS, "initialisation of the negative query map"),
        ("--lambda-mode", LAMBDA_MODES, "lambda: fixed, learnable per head, or per token"),
    ):
        group.add_argument(
            name, choices=choices, default=None, help=f"daGPAM {what} (default: the model's)"
        )


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a float >= 0."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def comma_list(text: str) -> list[str]:
    """argparse type: ``a,b,c`` -> ``["a", "b", "c"]``."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def comma_floats(text: str) -> list[float]:
    """argparse type: ``0,0.5,1`` -> ``[0.0, 0.5, 1.0]``."""
    try:
        return [float(t) for t in comma_list(text)]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text}") from e


def comma_ints(text: str) -> list[int]:
    """argparse type: ``1,2,3`` -> ``[1, 2, 3]``."""
    try:
        return [int(t) for t in comma_list(text)]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text}") from e
