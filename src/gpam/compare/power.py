"""Seeds by power (``gpam compare ... --target-mde X --max-seeds N``).

:func:`run_to_power` trains the grid on its seeds, then adds one paired seed at a time (the
next unused integer) until every row's MDE80 at equal steps (the smallest true difference to
softmax that the paired t-test detects with 80 % power at the 5 % level, in the curve quantity
of the equal-steps view; :func:`gpam.compare.stats.min_detectable_effect`) is at most ``X``, or
the grid holds ``max_seeds`` seeds. Every round is an ordinary :func:`run_grid` call on the same
``out``, so finished runs are reused. ``report.md`` gains a section saying which rows reached
the target; ``results.json`` a ``power`` entry.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpam._io import atomic_write_json
from gpam.compare.grid import CompareConfig

RunFn = Callable[..., dict[str, Any]]


def row_mdes(summary: dict[str, Any]) -> dict[str, float]:
    """``{label: MDE80 at equal steps}`` of every row paired with softmax (NaN when it cannot
    be computed, e.g. one pair)."""
    out = {}
    for row in summary["variants"]:
        if row["label"] == "softmax":
            continue
        d = row.get("at_step_vs_softmax") or {}
        out[row["label"]] = float(d.get("mde80", math.nan))
    return out


def reached(mdes: dict[str, float], target: float) -> dict[str, bool]:
    """Whether each row's MDE80 is at most ``target`` (NaN never reaches it)."""
    return {lab: bool(math.isfinite(v) and v <= target) for lab, v in mdes.items()}


def check_power(target_mde: float, max_seeds: int, n_seeds: int) -> None:
    """ValueError naming ``target_mde`` or ``max_seeds`` when they cannot be used with a grid
    of ``n_seeds`` seeds."""
    if not (isinstance(target_mde, (int, float)) and target_mde > 0):
        raise ValueError(f"target_mde must be a number > 0, got {target_mde!r}")
    if isinstance(max_seeds, bool) or not isinstance(max_seeds, int) or max_seeds < 2:
        raise ValueError(f"max_seeds must be an int >= 2, got {max_seeds!r}")
    if max_seeds < n_seeds:
        raise ValueError(f"max_seeds ({max_seeds}) must be at least the {n_seeds} seeds given")


def run_to_power(
    config: CompareConfig,
    kind: Any,
    out: str | os.PathLike,
    progress: bool = True,
    *,
    target_mde: float,
    max_seeds: int,
    lrs: dict[str, float] | None = None,
    run: RunFn | None = None,
) -> dict[str, Any]:
    """Add paired seeds until every row's MDE80 at equal steps is <= ``target_mde`` or the grid
    has ``max_seeds`` seeds (see the module docstring); ``run(config, kind, out, progress,
    lrs=...)`` trains one grid (default :func:`gpam.compare.runner.run_grid`). Returns the last
    results document with its ``power`` entry."""
    from gpam.compare.runner import run_grid

    run = run or run_grid
    check_power(target_mde, max_seeds, len(config.seeds))
    out = Path(out)
    seeds = list(config.seeds)
    rounds = []
    while True:
        cfg = dataclasses.replace(config, seeds=list(seeds))
        results = run(cfg, kind, out, progress, lrs=lrs)
        mdes = row_mdes(results["summary"])
        ok = reached(mdes, target_mde)
        rounds.append({"seeds": len(seeds), "mde80": mdes})
        if all(ok.values()) or len(seeds) >= max_seeds:
            break
        seeds.append(max(seeds) + 1)
    results["power"] = {
        "target_mde": float(target_mde),
        "max_seeds": max_seeds,
        "seeds": seeds,
        "quantity": results["summary"]["views"]["quantity_name"],
        "step": results["summary"]["views"]["step"],
        "mde80": mdes,
        "reached": ok,
        "stopped_by": "target" if all(ok.values()) else "max_seeds",
        "rounds": rounds,
    }
    atomic_write_json(out / "results.json", results)
    write_power_section(results, out)
    return results


def power_text(power: dict[str, Any]) -> list[str]:
    """Markdown lines of the seeds-by-power section."""
    how = (
        "every row reached it"
        if power["stopped_by"] == "target"
        else f"the seed budget (--max-seeds {power['max_seeds']}) ended first"
    )
    lines = [
        "## Seeds by power",
        "",
        f"Target: MDE80 at equal steps (step {power['step']}, {power['quantity']}) at most "
        f"{power['target_mde']:g}. Seeds were added one at a time; {len(power['seeds'])} seeds "
        f"({power['seeds']}): {how}.",
        "",
        "| setting | MDE80 at equal steps | reached |",
        "| --- | --- | --- |",
    ]
    for lab, v in power["mde80"].items():
        lines.append(f"| {lab} | {v:.4g} | {'yes' if power['reached'][lab] else 'no'} |")
    return [*lines, ""]


def write_power_section(results: dict[str, Any], out: Path) -> None:
    """Append the seeds-by-power section to ``out/report.md``."""
    path = out / "report.md"
    text = path.read_text() if path.is_file() else ""
    path.write_text(text.rstrip("\n") + "\n\n" + "\n".join(power_text(results["power"])))
