"""``gpam demo``: the project's main job on built-in data, a few minutes on a laptop CPU.

1. Rank collapse at initialisation (``gpam.analysis.rank_collapse``): pure-attention stacks of
   softmax, daGPAM and a peer (Cog attention), relative residual vs depth.
2. A short comparison (``gpam.compare.run_compare``) of softmax vs daGPAM vs the peer on a
   built-in synthetic task, over a few seeds at an equal step budget.

Everything lands in one folder: ``report.md`` (linking both parts), ``rank_collapse/`` and
``compare/``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpam._io import atomic_write_text


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
    trials: int = 4
    device: str = "cpu"
    threads: int | None = 1  # torch CPU threads (None: leave torch's setting)

    @classmethod
    def quick(cls) -> DemoSettings:
        """A seconds-long version for tests."""
        return cls(seeds=(0, 1), steps=4, depth=3, trials=1, batch_size=8)


def _rank_collapse(s: DemoSettings, out: Path, progress: bool) -> dict[str, Any]:
    from gpam.analysis.outputs import write_rank_collapse
    from gpam.analysis.rank_collapse import RankCollapseConfig, rank_collapse

    cfg = RankCollapseConfig(
        depth=s.depth,
        length=32,
        width=64,
        heads=4,
        trials=s.trials,
        batch=2,
        variants=list(s.variants),
        lam_neg=[0.5, 1.0],
        architectures=["attention"],
    )
    result = rank_collapse(cfg, show_progress=progress)
    write_rank_collapse(result, out)
    return result


def rank_table(result: dict[str, Any]) -> str:
    """Markdown table: relative Frobenius residual after selected layers, per setting."""
    depth = result["config"]["depth"]
    layers = sorted({0, 1, 2, depth // 4, depth // 2, depth} - {-1})
    head = "| attention | " + " | ".join(f"layer {i}" for i in layers) + " |"
    lines = [head, "|" + " --- |" * (len(layers) + 1)]
    for r in result["results"]:
        vals = [r["residual_fro_mean"][i] for i in layers]
        cells = " | ".join("n/a" if v is None else f"{v:.3g}" for v in vals)
        lines.append(f"| {r['label']} | {cells} |")
    return "\n".join(lines)


def rank_summary(result: dict[str, Any], threshold: float = 1e-3) -> str:
    """One sentence: for each setting, the first layer whose residual falls below ``threshold``
    (the depth at which the tokens have collapsed to one vector up to that tolerance)."""
    parts = []
    for r in result["results"]:
        vals = r["residual_fro_mean"]
        hit = next((i for i, v in enumerate(vals) if v is not None and v < threshold), None)
        parts.append(f"{r['label']} {hit if hit is not None else f'> {len(vals) - 1}'}")
    return f"Layers until the residual falls below {threshold:g}: " + ", ".join(parts) + "."


def run_demo(
    out: str | Path, settings: DemoSettings | None = None, *, progress: bool = True, echo=print
) -> Path:
    """Run the demo into ``out``; prints readable tables with ``echo``; returns report.md's path."""
    from gpam.compare.report import format_table
    from gpam.compare.runner import CompareConfig, run_compare
    from gpam.compare.trainer import TrainSettings, check_device
    from gpam.data.synthetic import make_task

    s = settings or DemoSettings()
    check_device(s.device)
    if s.threads is not None:
        import torch

        torch.set_num_threads(s.threads)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    echo("== 1/2 rank collapse at initialisation (pure attention stacks, no skips) ==")
    rc = _rank_collapse(s, out / "rank_collapse", progress)
    rtab = rank_table(rc)
    echo(rtab)
    echo(rank_summary(rc))
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
            "## 1. Rank collapse at initialisation",
            "",
            "Relative residual ||X - 1x̄ᵀ||_F / ||X||_F after each layer of a pure-attention "
            f"stack (no skip connections, fresh weights). {rank_summary(rc)} Details: "
            "[rank_collapse/report.md](rank_collapse/report.md), "
            "plot `rank_collapse/rank_collapse_attention.png`.",
            "",
            rtab,
            "",
            f"## 2. Short comparison on `{s.task}`",
            "",
            "Details, learning curves and statistics: [compare/report.md](compare/report.md), "
            "plot `compare/curves_metric.png`.",
            "",
            ctab,
            "",
        ]
    )
    path = atomic_write_text(out / "report.md", text)
    echo(f"\ndone in {wall:.0f} s")
    echo(f"report: {path}")
    return path
