"""``gpam demo``: the project's main job on built-in data, a few minutes on a laptop CPU.

1. The dilemma across the logit scale (``gpam.analysis.phase``): stacks of
   ``SA(rmsnorm(X))`` layers of softmax, daGPAM (lam_neg 1), centered, diff and Cog attention with
   W_Q, W_K multiplied by a short grid of gains (coarser than ``gpam analyze phase``'s default,
   which the report says, with the commands for both); per setting the final residual (rank
   collapse), the logit-Jacobian norm relative to a uniform row (saturation) and a sentence.
2. A short comparison (``gpam.compare.run_compare``) of softmax vs daGPAM vs the peer on a
   built-in synthetic task, over a few seeds at an equal step budget, its cost in CPU ms/step.

Everything lands in one folder: ``report.md`` (linking both parts), ``phase/`` and ``compare/``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpam._io import atomic_write_text


def _dilemma_variants() -> tuple[str, ...]:
    from gpam.functional import VARIANTS

    return tuple(v for v in ("softmax", "dagpam", "centered", "diff", "cog") if v in VARIANTS)


@dataclass
class DemoSettings:
    """What the demo runs (``quick`` shrinks everything to a smoke test for CI)."""

    task: str = "recall"
    task_options: dict[str, Any] = field(
        default_factory=lambda: {"n_pairs": 4, "n_queries": 4, "n_keys": 8, "n_values": 8}
    )
    variants: tuple[str, ...] = ("softmax", "dagpam", "cog")
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 600
    lr: float = 3e-3
    batch_size: int = 32
    depth: int = 12
    trials: int = 2
    dilemma_variants: tuple[str, ...] = field(default_factory=_dilemma_variants)
    qk_gains: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    device: str = "cpu"
    threads: int | None = 1  # torch CPU threads (None: leave torch's setting)

    @classmethod
    def quick(cls) -> DemoSettings:
        """A seconds-long version for tests."""
        return cls(seeds=(0, 1), steps=4, depth=3, trials=1, batch_size=8, qk_gains=(1.0, 8.0))


def _dilemma(s: DemoSettings, out: Path, progress: bool) -> dict[str, Any]:
    from gpam.analysis.phase import PhaseConfig, phase
    from gpam.analysis.phase_outputs import write_phase

    cfg = PhaseConfig(
        depth=s.depth,
        length=32,
        width=64,
        heads=4,
        trials=s.trials,
        batch=2,
        variants=list(s.dilemma_variants),
        lam_neg=[1.0],
        neg_query=["linear"],
        architectures=["attention_norm"],
        qk_gains=list(s.qk_gains),
    )
    result = phase(cfg, show_progress=progress)
    write_phase(result, out)
    return result


def dilemma_table(result: dict[str, Any]) -> str:
    """Markdown table: per setting and qk gain, ``final residual / Jacobian vs uniform``."""
    from gpam.analysis.phase_outputs import layer_mean
    from gpam.analysis.report import fmt

    gains = result["config"]["qk_gains"]
    lines = ["| attention | " + " | ".join(f"g={g:g}" for g in gains) + " |"]
    lines.append("|" + " --- |" * (len(gains) + 1))
    rows: dict[str, dict[float, dict]] = {}
    for r in result["results"]:
        rows.setdefault(r["label"], {})[r["qk_gain"]] = r
    for label, by_gain in rows.items():
        cells = []
        for g in gains:
            r = by_gain[g]
            cells.append(
                f"{fmt(r['residual_fro_mean'][-1])} / {fmt(layer_mean(r['jacobian_rel_mean']))}"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dilemma_sentences(result: dict[str, Any]) -> list[str]:
    """One computed sentence per setting (critical gain, Jacobian and region quantity there)."""
    from gpam.analysis.phase_outputs import critical_sentence

    cfg = result["config"]
    top = max(cfg["qk_gains"])
    return [critical_sentence(c, cfg["threshold"], top) for c in result["critical"]]


def _gains(gains) -> str:
    return ",".join(f"{g:g}" for g in gains)


def phase_grid_note(s: DemoSettings) -> str:
    """What grid the demo's dilemma uses, why its critical gains differ from ``gpam analyze
    phase``'s defaults, and the commands for both grids."""
    from gpam.analysis.phase import PhaseConfig

    d = PhaseConfig()
    same = (
        f"--variants {','.join(s.dilemma_variants)} --lam-neg 1 --neg-query linear "
        f"--depth {s.depth}"
    )
    return (
        f"Grid: qk gains {_gains(s.qk_gains).replace(',', ', ')} ({len(s.qk_gains)} gains), "
        f"{s.trials} trials x batch 2, depth {s.depth}. A critical gain is interpolated in "
        "log(gain) between the two grid gains around the threshold, so it (and the Jacobian "
        "there) depends on the grid: `gpam analyze phase` with its defaults uses a finer grid, "
        f"{len(d.qk_gains)} gains 2^(k/2) from {min(d.qk_gains):g} to {max(d.qk_gains):g} and "
        f"{d.trials} trials, and gives somewhat different numbers for the same settings. Finer "
        f"grid, these settings: `gpam analyze phase {same} --out phase-fine` (all defaults, "
        "every variant and setting: `gpam analyze phase --out phase`); this demo's grid: "
        f"`gpam analyze phase {same} --qk-gains {_gains(s.qk_gains)} --trials {s.trials} "
        "--out phase-demo`."
    )


def run_demo(
    out: str | Path, settings: DemoSettings | None = None, *, progress: bool = True, echo=print
) -> Path:
    """Run the demo into ``out``; prints readable tables with ``echo``; returns report.md's path."""
    from gpam.compare.report import format_table, notes
    from gpam.compare.runner import CompareConfig, run_compare
    from gpam.compare.settings import TrainSettings, check_device
    from gpam.data.synthetic import make_task

    s = settings or DemoSettings()
    check_device(s.device)
    if s.threads is not None:
        import torch

        torch.set_num_threads(s.threads)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    echo(
        "== 1/2 the dilemma: rank collapse vs saturation as W_Q, W_K grow "
        f"({s.depth} layers of SA(rmsnorm(X))) =="
    )
    ph = _dilemma(s, out / "phase", progress)
    rtab = dilemma_table(ph)
    sentences = dilemma_sentences(ph)
    echo("cells: final relative residual / logit Jacobian relative to a uniform row")
    echo(rtab)
    for line in sentences:
        echo(f"- {line}")
    grid = phase_grid_note(s)
    echo(grid)
    echo("")
    task = make_task(s.task, **s.task_options)
    cfg = CompareConfig(
        kind="synthetic",
        task=s.task,
        task_options=dict(s.task_options),
        variants=list(s.variants),
        seeds=list(s.seeds),
        lam_negs=[0.5],
        train=TrainSettings(
            steps=s.steps,
            batch_size=s.batch_size,
            lr=s.lr,
            eval_every=max(1, s.steps // 6),
            eval_batches=4,
            device=s.device,
            budget_clock="cpu",  # the report's ms/step: CPU seconds, steadier on a busy machine
        ),
    )
    echo(
        f"== 2/2 compare {', '.join(s.variants)} on '{s.task}' "
        f"({len(s.seeds)} seeds x {s.steps} steps) =="
    )
    results = run_compare(cfg, task, out / "compare", progress=progress)
    ctab = format_table(results["summary"])
    echo(ctab)
    wall = time.perf_counter() - t0
    text = "\n".join(
        [
            "# gpam demo",
            "",
            f"Wall time {wall:.0f} s. Built-in data only, no download.",
            "",
            "## 1. The dilemma across the logit scale",
            "",
            f"Stacks of {s.depth} freshly initialised layers `X_(l+1) = SA(rmsnorm(X_l))` (no "
            "skip, no MLP), W_Q and W_K multiplied by the gain g. Cells: relative residual "
            "||X - 1x̄ᵀ||_F / ||X||_F after the last layer (near 0: rank collapse) / norm of "
            "the attention map's Jacobian w.r.t. its logits relative to a uniform row (below 1: "
            "saturating), mean over layers. Details: [phase/report.md](phase/report.md), "
            "plot `phase/phase_dilemma_attention_norm.png`.",
            "",
            rtab,
            "",
            *[f"- {line}" for line in sentences],
            "",
            grid,
            "",
            f"## 2. Short comparison on `{s.task}`",
            "",
            "Details, learning curves and statistics: [compare/report.md](compare/report.md), "
            "plot `compare/curves_metric.png`. Residual: the final hidden states' relative "
            "residual (1 = tokens spread, 0 = collapsed).",
            "",
            ctab,
            "",
            *notes(results["summary"]),
            "",
        ]
    )
    path = atomic_write_text(out / "report.md", text)
    echo(f"\ndone in {wall:.0f} s")
    echo(f"report: {path}")
    return path
