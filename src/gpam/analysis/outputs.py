"""Writing the rank-collapse and faithfulness results: JSON, PNG plots and report.md."""

from __future__ import annotations

from pathlib import Path

from gpam._io import atomic_write_json, atomic_write_text
from gpam.analysis import plots
from gpam.analysis.report import (
    collapse_sentences,
    eps_of,
    report_layers,
    residual_table,
    slowest_and_fastest,
)

ARCH_TITLES = {
    "attention": "pure attention (no skip, no MLP, no norm)",
    "attention_norm": "attention of the RMS-normalised input (no skip, no MLP)",
    "attention_skip": "attention + skip connection",
    "preln": "pre-LN Transformer blocks",
}
THRESHOLD = 1e-6


def _stack_text(cfg: dict) -> str:
    return (
        f"depth {cfg['depth']}, length {cfg['length']}, width {cfg['width']}, "
        f"heads {cfg['heads']}, "
        f"{cfg['trials']} trials x batch {cfg['batch']} (seeds {cfg['seed']}..."
        f"{cfg['seed'] + cfg['trials'] - 1}), {cfg['dtype']}, "
        + cfg.get("inputs", f"inputs N(0, {cfg['input_scale']:g}^2)")
    )


def _section(results: list[dict], cfg: dict, heading: str, floor: float) -> list[str]:
    depth = cfg["depth"]
    mid = min(report_layers(depth)[1:2] or [depth])
    lines = [f"## {heading}", ""]
    lines += ["Relative Frobenius residual `||res(X)||_F / ||X||_F` (mean ± std over trials):", ""]
    lines += [residual_table(results, "residual_fro", depth, floor), ""]
    lines += ["Relative composite residual `||res||_{1,inf} / ||X||_{1,inf}` (Dong et al.):", ""]
    lines += [residual_table(results, "residual_composite", depth, floor), ""]
    lines += ["What the Frobenius measure did:", ""]
    lines += collapse_sentences(results, "residual_fro", THRESHOLD, floor)
    sentence = slowest_and_fastest(results, "residual_fro", mid)
    if sentence:
        lines += ["", sentence]
    lines.append("")
    return lines


def _start(result: dict, out: Path, name: str) -> tuple[Path, dict, list[Path], float]:
    """Write ``result`` as ``out/name``; returns ``out``, the result's config, the written paths
    and the machine epsilon of its dtype."""
    out = Path(out)
    return (
        out,
        result["config"],
        [atomic_write_json(out / name, result)],
        eps_of(result["config"]["dtype"]),
    )


def write_rank_collapse(result: dict, out: Path) -> list[Path]:
    """``rank_collapse.json``, ``rank_collapse_<architecture>.png`` and ``report.md`` in ``out``."""
    out, cfg, written, eps = _start(result, out, "rank_collapse.json")
    floor = 1000 * eps
    lines = [
        "# Rank collapse "
        + ("on a checkpoint's layers" if cfg.get("checkpoint") else "at initialisation"),
        "",
        (
            "Layers of a trained checkpoint"
            if cfg.get("checkpoint")
            else "Stacks of freshly initialised `gpam.MultiheadAttention` layers"
        )
        + f": {_stack_text(cfg)}.",
        "Residual `res(X) = X - 1 x^T` with `x` the token mean, measured after each layer "
        "(layer 0 = the input). `*` marks means below 1000 machine epsilons "
        f"({floor:.1e}), i.e. at round-off level, where differences carry no information.",
        "",
    ]
    if cfg.get("checkpoint"):
        lines += [f"Layers taken from the trained checkpoint `{cfg['checkpoint']}`.", ""]
    archs = list(dict.fromkeys(r["architecture"] for r in result["results"]))
    for arch in archs:
        rs = [r for r in result["results"] if r["architecture"] == arch]
        title = ARCH_TITLES.get(arch, arch)
        if cfg.get("checkpoint") and arch == "preln":
            title = "the checkpoint's own full Transformer layers"
        png = out / f"rank_collapse_{arch}.png"
        plots.residual_curves(rs, png, title=f"Rank collapse: {title}", eps=eps)
        written.append(png)
        lines += _section(rs, cfg, f"{title} (`{png.name}`)", floor)
    written.append(atomic_write_text(out / "report.md", "\n".join(lines)))
    return written


def write_faithfulness(result: dict, out: Path) -> list[Path]:
    """``faithfulness.json``, one PNG per sweep and ``report.md`` in ``out``."""
    out, cfg, written, eps = _start(result, out, "faithfulness.json")
    floor = 1000 * eps
    lines = [
        "# Lambda sweeps of the rank-collapse measure",
        "",
        f"daGPAM stacks ({ARCH_TITLES.get(cfg['architecture'], cfg['architecture'])}) at "
        f"initialisation: {_stack_text(cfg)}. `*` marks means below {floor:.1e} (round-off level).",
        "",
    ]
    for sweep in result["sweeps"]:
        png = out / f"faithfulness_{sweep['name']}.png"
        plots.residual_curves(sweep["results"], png, title=sweep["description"], eps=eps)
        written.append(png)
        lines += _section(sweep["results"], cfg, f"{sweep['description']} (`{png.name}`)", floor)
    written.append(atomic_write_text(out / "report.md", "\n".join(lines)))
    return written
