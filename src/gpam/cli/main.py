"""Entry point of the ``gpam`` console script."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gpam.cli import analyze, bench, compare, demo, evaluate, generate, train
from gpam.cli._common import Parser

COMMANDS = (demo, analyze, train, evaluate, generate, compare, bench)


def build_parser() -> argparse.ArgumentParser:
    """The full ``gpam`` argument parser with every sub-command registered (no torch import:
    the commands import the library only when they run)."""
    parser = Parser(
        prog="gpam",
        description="Generalized probabilistic attention (daGPAM): analyses, training, "
        "evaluation, comparisons and benchmarks.",
    )
    from gpam import __version__

    parser.add_argument("--version", action="version", version=f"gpam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    _name_leaves(parser)
    return parser


def _name_leaves(parser: argparse.ArgumentParser) -> None:
    """Give every leaf command its full name (``gpam train lm``) for error messages."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        parser.set_defaults(_prog=parser.prog)
    for action in subs:
        for child in action.choices.values():
            _name_leaves(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; bad input gives a one-line error and exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt as e:  # training: SIGINT / SIGTERM after a checkpoint
        print(f"gpam {args.command}: {e}" if str(e) else "gpam: interrupted", file=sys.stderr)
        return getattr(e, "exit_code", 130)
    except (ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        if os.environ.get("GPAM_DEBUG"):
            raise
        print(f"{args._prog}: error: {e}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
