"""``--sizes``: the same grid at several model sizes, and loss against training compute.

Each size (``d_model x layers``; heads and ``d_ff`` from the shared settings) is its own
comparison through :func:`gpam.compare.runner.run_grid` in ``out/size=DxL/`` (its own
``report.md``, resumable). Then ``out/scaling.json``, ``out/scaling.md`` and
``out/loss_vs_flops.png``: every setting's final loss against its training FLOPs
(:mod:`gpam.compare.flops`), a power-law fit per setting, and the compute multiplier over
softmax with its paired-bootstrap interval and trend (:mod:`gpam.compare.multiplier`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gpam._io import atomic_write_json, atomic_write_text
from gpam.compare import multiplier as mm
from gpam.compare.grid import CompareConfig, grid
from gpam.compare.kinds import Kind

SCHEMA = "gpam.compare.scaling/1"


def size_name(size: tuple[int, int]) -> str:
    """``"DxL"`` of ``(d_model, layers)``."""
    return f"{size[0]}x{size[1]}"


def size_configs(config: CompareConfig, sizes: list[tuple[int, int]]) -> list[CompareConfig]:
    """One config per size (``d_model`` and ``n_layers`` replaced), each validated; ValueError
    naming the size whose shape does not fit (e.g. heads not dividing d_model)."""
    if not sizes:
        raise ValueError("sizes must name at least one D_MODELxLAYERS")
    out = []
    for d, n in sizes:
        c = dataclasses.replace(config, d_model=d, n_layers=n)
        if d % c.n_heads:
            raise ValueError(f"sizes: {d}x{n}: d_model {d} is not divisible by heads {c.n_heads}")
        c.validate()
        out.append(c)
    return out


def run_sizes(
    config: CompareConfig,
    kind: Kind,
    out: str | os.PathLike,
    sizes: list[tuple[int, int]],
    progress: bool = True,
    run: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run the grid of ``config`` at every size in ``out/size=DxL/``, then write the scaling
    report into ``out``; returns the ``scaling.json`` document. ``run(config, kind, out,
    progress) -> results`` runs one size (default :func:`gpam.compare.runner.run_grid`; the
    ``--lrs`` / ``--target-mde`` runner tunes each size on its own)."""
    from gpam.compare.runner import run_grid

    run = run or run_grid
    configs = size_configs(config, sizes)
    for c in configs:  # every size's model configs are built before anything trains
        for spec in grid(c, c.d_ff):
            kind.model_config(c, spec)
    out = Path(out)
    per_size = {}
    for size, c in zip(sizes, configs):
        per_size[size_name(size)] = run(c, kind, out / f"size={size_name(size)}", progress)
    doc = summarize_sizes(per_size)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "scaling.json", doc)
    write_scaling_report(doc, out)
    return doc


def test_loss(run: dict[str, Any]) -> float | None:
    """A run's test loss in nats/token: its ``test_loss``, or for a perplexity run scored on a
    test split (``--lrs``: ``final_metric`` is the test perplexity, ``val_final_metric`` the
    validation one) the log of its test perplexity; None when it has no test loss."""
    if run.get("test_loss") is not None:
        return float(run["test_loss"])
    if "val_final_metric" in run and run.get("metric") == "perplexity":
        ppl = float(run["final_metric"])
        return math.log(ppl) if ppl > 0 else math.nan
    return None


def loss_key(runs: list[dict[str, Any]]) -> tuple[str, str]:
    """``(run key, description)`` of the loss the multiplier reads: the test loss when every
    run has one (:func:`test_loss`), else the final validation loss."""
    if runs and all(test_loss(r) is not None for r in runs):
        return "test_loss", "test loss (nats/token)"
    return "final_loss", "final validation loss (nats/token; these runs have no test loss)"


def summarize_sizes(per_size: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Runs of every size as points ``{label, size, seed, compute, loss, cpu_s, params}``, and
    the multiplier analysis over them (or the reason it could not be made)."""
    runs = [
        (size, r)
        for size, res in per_size.items()
        for r in res["runs"].values()
        if r.get("status") == "done"
        and r.get("train_flops")
        and r["label"] in {v["label"] for v in res["summary"]["variants"]}
    ]
    key, what = loss_key([r for _, r in runs])
    points = [
        {
            "label": r["label"],
            "attention": r.get("attention", r["label"]),
            "size": size,
            "seed": r["seed"],
            "compute": float(r["train_flops"]),
            "loss": float(test_loss(r)) if key == "test_loss" else float(r[key]),
            "cpu_s": r.get("cpu_s"),
            "train_s": r.get("train_s"),
            "params": r.get("params"),
        }
        for size, r in runs
    ]
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "sizes": list(per_size),
        "loss_key": key,
        "loss": what,
        "points": points,
    }
    first = next(iter(per_size.values()), {})
    doc["kind"], doc["task"] = first.get("kind"), (first.get("task") or {}).get("task")
    try:
        doc["multiplier"] = mm.compute_multipliers(points)
    except ValueError as err:
        doc["multiplier"] = None
        doc["multiplier_error"] = str(err)
    return doc


def _g(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def _ci_end(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "not reached (above)"
    if x == 0:
        return "not reached (below)"
    return _g(x)


def _cells(doc: dict[str, Any]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for p in doc["points"]:
        out.setdefault((p["label"], p["size"]), []).append(p)
    return out


def format_runs_table(doc: dict[str, Any]) -> str:
    """Per setting and size: parameters, training FLOPs, CPU seconds, loss (mean ± std)."""
    lines = [
        "| setting | size | params | training FLOPs | CPU s (train_loop) | loss (mean ± std) | n |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (lab, size), ps in _cells(doc).items():
        losses = [p["loss"] for p in ps]
        cpu = [p["cpu_s"] for p in ps if p.get("cpu_s") is not None]
        std = float(np.std(losses, ddof=1)) if len(losses) > 1 else math.nan
        lines.append(
            f"| {lab} | {size} | {ps[0].get('params') or 0:,} | "
            f"{np.mean([p['compute'] for p in ps]):.3e} | {_g(np.mean(cpu) if cpu else None)} | "
            f"{float(np.mean(losses)):.4f} ± {_g(std, 2)} | {len(ps)} |"
        )
    return "\n".join(lines)


def format_multiplier_table(m: dict[str, Any]) -> str:
    """Per setting and size: the multiplier over softmax with its 95 % interval."""
    lines = [
        "| setting | size | training FLOPs | loss | compute multiplier | 95 % CI (paired "
        "bootstrap over seeds) | resamples reached |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in m["cells"]:
        if c["label"] == m["base"]:
            continue
        if c["status"] == mm.REACHED:
            value = f"**{_g(c['multiplier'])}**"
        elif c["status"] == mm.ABOVE:
            value = f"not reached: > {_g(c['bound'])}"
        elif c["status"] == mm.BELOW:
            value = f"not reached: < {_g(c['bound'])}"
        else:
            value = "none (softmax's loss does not fall with compute)"
        ci = f"[{_ci_end(c['ci_low'])}, {_ci_end(c['ci_high'])}]"
        lines.append(
            f"| {c['label']} | {c['size']} | {c['compute']:.3e} | {c['loss']:.4f} | {value} | "
            f"{ci} | {100 * c['reached_frac']:.0f} % |"
        )
    return "\n".join(lines)


def format_fit_table(m: dict[str, Any]) -> str:
    """Each setting's own power law over its measured range."""
    lines = [
        "| setting | a | b | RMS log residual | fitted FLOPs range |",
        "| --- | --- | --- | --- | --- |",
    ]
    for lab, f in m["fits"].items():
        if "error" in f:
            lines.append(f"| {lab} | — | — | — | {f['error']} |")
        else:
            lines.append(
                f"| {lab} | {_g(f['a'], 4)} | {_g(f['b'], 4)} | {_g(f['rms_log'], 2)} | "
                f"{f['c_min']:.3e} – {f['c_max']:.3e} |"
            )
    return "\n".join(lines)


def format_trend_table(m: dict[str, Any]) -> str:
    """Per setting: the slope of log multiplier on log compute with its interval."""
    lines = [
        "| setting | d log M / d log C | 95 % CI | sizes reached | trend |",
        "| --- | --- | --- | --- | --- |",
    ]
    for lab, t in m["trend"].items():
        lines.append(
            f"| {lab} | {_g(t['slope'])} | [{_g(t['ci_low'])}, {_g(t['ci_high'])}] | "
            f"{t['n_reached']} | {t['verdict']} |"
        )
    return "\n".join(lines)


def plot_loss_vs_flops(doc: dict[str, Any], out: Path) -> Path:
    """``loss_vs_flops.png``: seed-mean loss (bars: min-max over seeds) against training FLOPs
    (log x), one curve per setting, with its power-law fit over its measured range (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gpam.analysis.plots import series_styles

    cells = _cells(doc)
    labels = list(dict.fromkeys(lab for lab, _ in cells))
    attention = {p["label"]: p["attention"] for p in doc["points"]}
    styles = dict(zip(labels, series_styles([attention[lab] for lab in labels])))
    fits = (doc.get("multiplier") or {}).get("fits", {})
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for lab in labels:
        mine = sorted(
            (float(np.mean([p["compute"] for p in ps])), [p["loss"] for p in ps])
            for (la, _), ps in cells.items()
            if la == lab
        )
        xs = [x for x, _ in mine]
        ys = np.array([np.mean(v) for _, v in mine])
        lo = ys - np.array([min(v) for _, v in mine])
        hi = np.array([max(v) for _, v in mine]) - ys
        st = styles[lab]
        ax.errorbar(xs, ys, yerr=[lo, hi], label=lab, capsize=3, ms=4, **st)
        f = fits.get(lab)
        if f and "a" in f:
            grid_c = np.geomspace(f["c_min"], f["c_max"], 50)
            ax.plot(grid_c, f["a"] * grid_c ** -f["b"], color=st["color"], ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs (analytic, forward x 3)")
    ax.set_ylabel(doc["loss"].split(" (")[0])
    ax.set_title(
        f"{doc.get('task') or ''}: loss vs training compute per setting\n"
        "(mean over seeds, bars = min-max; dotted = power-law fit L = a C^-b)",
        fontsize=9,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "loss_vs_flops.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_scaling_report(doc: dict[str, Any], out: str | Path) -> Path:
    """``scaling.md`` (and ``loss_vs_flops.png``) from a ``scaling.json`` document."""
    out = Path(out)
    plot = plot_loss_vs_flops(doc, out)
    m = doc.get("multiplier")
    text = [
        f"# gpam compare {doc.get('kind')} --sizes: {doc.get('task')}",
        "",
        f"Sizes (d_model x layers): {', '.join(doc['sizes'])}; each size's own report is in "
        "`size=DxL/report.md`. Loss: " + doc["loss"] + ". Training FLOPs: analytic, per batch "
        "trained on, forward x 3 for forward + backward, every query-key pair counted (no "
        'causal halving), attention core per variant (docs/compare.md, "Training FLOPs"). '
        "CPU s: process CPU seconds of each run's training call (validation included; only "
        "the part after a restart for a resumed run).",
        "",
        format_runs_table(doc),
        "",
    ]
    if m is None:
        text += [f"No compute multiplier: {doc.get('multiplier_error')}.", ""]
    else:
        text += [
            "## Compute multiplier over softmax",
            "",
            "Multiplier M: the softmax compute that reaches the setting's (seed-mean) loss, "
            "divided by the setting's compute; M > 1: softmax needs M times the compute for "
            "that loss, M < 1: the setting is worse than softmax at its compute. Softmax's "
            f"compute for a loss is read by {m['method_text']}, only inside the FLOPs range "
            "softmax was measured at: a loss outside it is *not reached* (with the bound it "
            "implies), never extrapolated; a softmax curve that does not fall with every size "
            f"gives no multiplier. 95 % CI: {m['n_boot']} resamples of the seeds "
            f"{m['seeds']} with replacement, the same seeds for every setting and size "
            "(paired), refitting softmax each time; 'resamples reached' is the share of "
            "resamples in which softmax's fit reached the setting's loss.",
            "",
            format_multiplier_table(m),
            "",
            f"Each setting's own fit over its measured range ({m['form']}; RMS residual of "
            "log L, a measure of how well the form fits):",
            "",
            format_fit_table(m),
            "",
            "Trend over size: the slope of log M on log C over the sizes where M was reached "
            "(> 0: the advantage grows with compute), with its interval over the same "
            "resamples.",
            "",
            format_trend_table(m),
            "",
        ]
    text += [f"![loss vs training FLOPs]({plot.name})", ""]
    path = out / "scaling.md"
    atomic_write_text(path, "\n".join(text))
    return path
