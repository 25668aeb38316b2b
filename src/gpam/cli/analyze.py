"""`gpam analyze`: placeholder until its issue lands (owned by that issue's developer)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `analyze` command to the `gpam` parser."""
    p = sub.add_parser("analyze", help="(not yet available)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    raise ValueError("this command is not available yet")
