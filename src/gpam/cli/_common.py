"""Options shared by several commands, and the parser class every command uses.

Nothing here imports torch: ``gpam --version`` and every ``--help`` stay fast, and the choices
shown come from torch-free modules (``gpam._names``, the variant registry file).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from gpam._names import LAMBDA_MODES, NEG_INITS, NEG_QUERIES


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to every option that takes a value, has a default and whose help
    does not already state it (lists are shown as ``a,b,c``, as typed)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is None
            or default is argparse.SUPPRESS
            or action.nargs == 0
            or not action.option_strings
        ):
            return text
        if isinstance(default, list | tuple):
            shown = ",".join(str(x) for x in default)
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (``gpam train lm: error: ...``) and
    exit status 2, and whose help shows every default; sub-parsers inherit it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        """Print ``PROG: error: MESSAGE (see PROG --help)`` and exit 2 (no usage dump)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def variant_names() -> tuple[str, ...]:
    """``gpam.VARIANTS`` without importing torch: the registry file
    (``gpam/functional/registry.py``, torch-free by design) is loaded on its own unless
    ``gpam.functional`` is already imported."""
    loaded = sys.modules.get("gpam.functional.registry")
    if loaded is None:
        name = "gpam.cli._registry"  # a private copy of the module, never the package
        loaded = sys.modules.get(name)
        if loaded is None:
            path = Path(__file__).resolve().parent.parent / "functional" / "registry.py"
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            loaded = importlib.util.module_from_spec(spec)
            sys.modules[name] = loaded  # dataclasses look the module up while it runs
            spec.loader.exec_module(loaded)
    return tuple(loaded.VARIANTS)


def add_alias(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, action: argparse.Action, *old: str
) -> None:
    """Accept the older spellings ``old`` of ``action``'s option, hidden from ``--help``."""
    parser.add_argument(
        *old,
        dest=action.dest,
        type=action.type,
        choices=action.choices,
        metavar=action.metavar,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )


def add_threads(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: int | None = None
) -> None:
    """``--threads N``: torch CPU threads (``None`` = torch's own, one per core)."""
    shown = "torch's own, one per core" if default is None else str(default)
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=default,
        help="CPU threads for torch; on a shared or busy machine use 1 (or cores / processes): "
        "threads without a free core make small models many times slower (40 vs 253 ms/step "
        f"measured, docs/benchmarks.md) (default: {shown})",
    )


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` (no-op for ``None``)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def add_attention(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--attention VARIANT``, one of ``gpam.VARIANTS``."""
    parser.add_argument(
        "--attention",
        choices=variant_names(),
        default="dagpam",
        metavar="VARIANT",
        help="attention variant of every attention layer, one of %(choices)s",
    )


def add_model_shape(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    d_model: int,
    layers: int,
    heads: int,
    layers_help: str = "layers",
) -> None:
    """``--d-model``, ``--layers`` and ``--heads`` (dests ``d_model``, ``n_layers``,
    ``n_heads``); the spellings ``--n-layers`` / ``--n-heads`` are hidden aliases."""
    parser.add_argument("--d-model", type=positive_int, default=d_model, help="model width")
    for name, default, text in (
        ("layers", layers, layers_help),
        ("heads", heads, "attention heads"),
    ):
        action = parser.add_argument(
            f"--{name}",
            dest=f"n_{name}",
            metavar=name.upper(),
            type=positive_int,
            default=default,
            help=text,
        )
        add_alias(parser, action, f"--n-{name}")


def add_tokenizer(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str) -> None:
    """``--tokenizer char|word|bpe`` (``--level`` is a hidden alias)."""
    action = parser.add_argument(
        "--tokenizer",
        choices=("char", "word", "bpe"),
        default=default,
        help="tokenizer trained on the training split",
    )
    add_alias(parser, action, "--level")


#: what marks a folder as a gpam run (train, fine-tune): ``--overwrite`` removes only such folders
RUN_MARKERS = ("train.json", "metrics.json", "checkpoints", "log.jsonl")


def claim_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Make ``out`` ready for a new run: refuse (ValueError) a folder that already holds files
    unless ``--resume`` (continue it) or ``--overwrite`` (remove the earlier run first, only if
    the folder is a gpam run) was given, so a rerun never mixes with or silently replaces one."""
    if resume or not out.is_dir() or not any(out.iterdir()):
        return
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 decides (and may be writing)
        return
    if not overwrite:
        raise ValueError(
            f"--out {out} already holds a run; pass --resume to continue it, --overwrite to "
            "replace it, or choose another --out"
        )
    if not any((out / m).exists() for m in RUN_MARKERS):
        raise ValueError(
            f"--overwrite replaces a gpam run folder, but {out} holds other files (no "
            f"{', '.join(RUN_MARKERS)}); choose another --out"
        )
    shutil.rmtree(out)


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
        "torchrun rank 0's clock decides (default: none, --steps decides)",
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
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    if not all(items):
        raise argparse.ArgumentTypeError(f"empty entry in the comma-separated list {text!r}")
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
