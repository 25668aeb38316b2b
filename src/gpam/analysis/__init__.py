"""The paper's analyses: rank collapse, lambda sweeps, gradient tracking and Dong et al.'s bound.

Entry points (each writes ``*.json``, ``*.png`` and ``report.md`` to ``out``):
``run_rank_collapse(out, **config)``, ``run_faithfulness(out, **config)``,
``run_gradients(out, **config)``, ``run_phase(out, **config)``; the config keywords are the
fields of ``RankCollapseConfig``, ``FaithfulnessConfig``, ``GradientsConfig`` and
``PhaseConfig``; ``threads`` (default 1) sets torch's CPU threads for the run (the workloads are
many tiny products).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from gpam.analysis._threads import torch_threads
from gpam.analysis.bounds import bound_factor, bound_shrink, head_betas, shrink
from gpam.analysis.explicit import AttentionRecord, explicit_attention
from gpam.analysis.faithfulness import FaithfulnessConfig, faithfulness
from gpam.analysis.gradients import GradientsConfig, gradients
from gpam.analysis.measures import (
    composite_norm,
    norm_1,
    norm_inf,
    relative_residual_composite,
    relative_residual_fro,
    residual,
    row_entropy,
    row_max,
)
from gpam.analysis.phase import PhaseConfig, critical_point, phase
from gpam.analysis.phase_maps import jacobian_rel, logit_std, region_quantity
from gpam.analysis.rank_collapse import RankCollapseConfig, StackConfig, rank_collapse
from gpam.analysis.stacks import ARCHITECTURES, VariantSpec, build_stack, run_stack

__all__ = [
    "ARCHITECTURES",
    "AttentionRecord",
    "FaithfulnessConfig",
    "GradientsConfig",
    "PhaseConfig",
    "RankCollapseConfig",
    "StackConfig",
    "VariantSpec",
    "bound_factor",
    "bound_shrink",
    "build_stack",
    "composite_norm",
    "critical_point",
    "explicit_attention",
    "faithfulness",
    "gradients",
    "head_betas",
    "jacobian_rel",
    "logit_std",
    "norm_1",
    "norm_inf",
    "phase",
    "rank_collapse",
    "region_quantity",
    "relative_residual_composite",
    "relative_residual_fro",
    "residual",
    "row_entropy",
    "row_max",
    "run_faithfulness",
    "run_gradients",
    "run_phase",
    "run_rank_collapse",
    "run_stack",
    "shrink",
]


def _run(
    out: str | Path, threads: int | None, measure: Callable[[], dict], write: Callable
) -> dict:
    """``measure()`` with ``threads`` torch CPU threads, its result written by
    ``write(result, out)``; returns the result."""
    with torch_threads(threads):
        result = measure()
    write(result, Path(out))
    return result


def run_rank_collapse(
    out: str | Path,
    *,
    checkpoint: str | Path | None = None,
    show_progress: bool = True,
    threads: int | None = 1,
    **config: Any,
) -> dict:
    """Measure rank collapse (fresh stacks, or a trained checkpoint's layers) and write outputs."""
    from gpam.analysis.outputs import write_rank_collapse

    if checkpoint is not None:
        from gpam.analysis.checkpoint import rank_collapse_checkpoint

        measure = partial(
            rank_collapse_checkpoint, checkpoint, show_progress=show_progress, **config
        )
    else:
        measure = partial(rank_collapse, RankCollapseConfig(**config), show_progress=show_progress)
    return _run(out, threads, measure, write_rank_collapse)


def run_faithfulness(
    out: str | Path, *, show_progress: bool = True, threads: int | None = 1, **config: Any
) -> dict:
    """Run both lambda sweeps and write ``faithfulness.json``, plots and ``report.md``."""
    from gpam.analysis.outputs import write_faithfulness

    measure = partial(faithfulness, FaithfulnessConfig(**config), show_progress=show_progress)
    return _run(out, threads, measure, write_faithfulness)


def run_gradients(
    out: str | Path, *, show_progress: bool = True, threads: int | None = 1, **config: Any
) -> dict:
    """Train per variant, record gradients, write ``gradients.json``, plots and ``report.md``."""
    from gpam.analysis.grad_outputs import write_gradients

    measure = partial(gradients, GradientsConfig(**config), show_progress=show_progress)
    return _run(out, threads, measure, write_gradients)


def run_phase(
    out: str | Path,
    *,
    checkpoint: str | Path | None = None,
    show_progress: bool = True,
    threads: int | None = 1,
    **config: Any,
) -> dict:
    """The logit-scale dilemma (fresh stacks over gains, or a trained checkpoint's layers)."""
    if checkpoint is not None:
        from gpam.analysis.phase_checkpoint import phase_checkpoint, write_phase_checkpoint

        measure = partial(phase_checkpoint, checkpoint, show_progress=show_progress, **config)
        return _run(out, threads, measure, write_phase_checkpoint)
    from gpam.analysis.phase_outputs import write_phase

    measure = partial(phase, PhaseConfig(**config), show_progress=show_progress)
    return _run(out, threads, measure, write_phase)
