"""Writing the gradients run: ``gradients.json``, PNG plots and ``report.md`` (computed text)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gpam._io import atomic_write_json, atomic_write_text  # noqa: E402
from gpam.analysis import plots  # noqa: E402
from gpam.analysis.report import fmt  # noqa: E402

PLOTS = (
    ("logit_grad_norm", "||dL/dS|| (all logit maps)", "gradient norm at the attention logits"),
    ("input_grad_norm", "||dL/dX_l||", "gradient norm at the layer input"),
    ("max_weight", "mean over rows of max_j W_ij", "largest attention weight per row"),
    ("shrink_measured", "||res(SA(X))|| / ||res(X)|| (1,inf)", "measured residual shrink"),
)


def _entropy_key(run: dict) -> str:
    keys = [k for k in run["layers"][0] if k.startswith("entropy_")] if run["layers"] else []
    return keys[0] if keys else "entropy"


def _entropy_plot(runs: list[dict], path: Path) -> Path:
    tagged = []
    for r in runs:
        key = _entropy_key(r)
        label = f"{r['label']} ({key.removeprefix('entropy_')})"
        layers = [{"entropy": lay.get(key)} for lay in r["layers"]]
        tagged.append({**r, "label": label, "layers": layers})
    return plots.gradient_curves(
        tagged, "entropy", path, ylabel="attention entropy (nats)", title="attention entropy"
    )


def _shrink_bound_plot(runs: list[dict], path: Path) -> Path:
    """Per layer: softmax's bound and measured shrink, and every other run's measured shrink."""
    n_layers = max(len(r["layers"]) for r in runs)
    fig, axes = plt.subplots(1, n_layers, figsize=(4 * n_layers, 3.8), squeeze=False)
    for li in range(n_layers):
        ax = axes[0][li]
        for r in runs:
            lay = r["layers"][li] if li < len(r["layers"]) else {}
            if "shrink_measured" in lay:
                (line,) = ax.plot(r["steps"], plots._positive(lay["shrink_measured"]), lw=1,
                                  label=f"{r['label']} measured")  # fmt: skip
            if "shrink_bound" in lay:
                ax.plot(r["steps"], plots._positive(lay["shrink_bound"]), lw=1, ls="--",
                        color=line.get_color(), label=f"{r['label']} bound")  # fmt: skip
        plots.log_y(ax)
        ax.set_xlabel("training step")
        if li == 0:
            ax.set_ylabel("||res(SA(X))||_1,inf / ||res(X)||_1,inf")
        ax.set_title(f"layer {li}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.suptitle("single-layer residual shrink: measured vs Dong et al.'s bound (softmax)")
    fig.tight_layout()
    return plots._save(fig, path)


def _frac_larger(a: list, b: list) -> float | None:
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return None
    return sum(x > y for x, y in pairs) / len(pairs)


def _median_ratio(a: list, b: list) -> float | None:
    ratios = [x / y for x, y in zip(a, b) if x is not None and y and y > 0]
    return statistics.median(ratios) if ratios else None


def comparison_lines(runs: list[dict], key: str, what: str) -> list[str]:
    """Per non-softmax run and layer: share of steps where ``key`` exceeds softmax's."""
    base = next((r for r in runs if r["variant"] == "softmax"), None)
    if base is None:
        return ["- (softmax was not run, so there is no baseline to compare with)"]
    lines = []
    for r in runs:
        if r is base:
            continue
        n = min(len(r["steps"]), len(base["steps"]))
        parts = []
        for li, lay in enumerate(r["layers"]):
            frac = _frac_larger(lay[key][:n], base["layers"][li][key][:n])
            med = _median_ratio(lay[key][:n], base["layers"][li][key][:n])
            if frac is None:
                continue
            q = max(1, n // 4)  # the last quarter of training
            late = _frac_larger(lay[key][n - q : n], base["layers"][li][key][n - q : n])
            parts.append(
                f"layer {li}: {100 * frac:.0f}% of steps, {100 * late:.0f}% of the last "
                f"{q} (median ratio {fmt(med)})"
            )
        verdict = _verdict(r, base, key, n)
        lines.append(
            f"- {r['label']} {what} larger than softmax's at " + "; ".join(parts) + verdict
        )
    return lines


def dagpam_map_lines(runs: list[dict]) -> list[str]:
    """daGPAM's positive map alone vs softmax's map, raw and divided by ``lam_pos``.

    ``dL/dS_pos`` carries the factor ``lam_pos`` by construction (``W = lam_pos A_pos - ...``),
    so the ratio divided by ``lam_pos`` compares the softmax Jacobians themselves.
    """
    base = next((r for r in runs if r["variant"] == "softmax"), None)
    dag = [r for r in runs if r["variant"] == "dagpam"]
    if base is None or not dag:
        return []
    lines = [
        "",
        "The positive map alone (`S_pos` vs softmax's `S`); `dL/dS_pos` carries the factor "
        "lam_pos by construction, so the median ratio is also given divided by lam_pos:",
        "",
    ]
    for r in dag:
        n = min(len(r["steps"]), len(base["steps"]))
        parts = []
        for li, lay in enumerate(r["layers"]):
            a, b = lay["logit_grad_norm_S_pos"][:n], base["layers"][li]["logit_grad_norm"][:n]
            frac, med = _frac_larger(a, b), _median_ratio(a, b)
            if frac is None or med is None:
                continue
            parts.append(
                f"layer {li}: larger at {100 * frac:.0f}% of steps, median ratio {fmt(med)} "
                f"({fmt(med / r['lam_pos'])} per unit lam_pos)"
            )
        lines.append(f"- {r['label']} (lam_pos = {r['lam_pos']:g}): " + "; ".join(parts) + ".")
    return lines


def _verdict(r: dict, base: dict, key: str, n: int) -> str:
    """A closing clause when the comparison holds (or fails) at every step in every layer."""
    fracs = [
        _frac_larger(lay[key][:n], base["layers"][li][key][:n])
        for li, lay in enumerate(r["layers"])
    ]
    fracs = [f for f in fracs if f is not None]
    if fracs and all(f == 1.0 for f in fracs):
        return ". It stayed larger at every recorded step in every layer."
    if fracs and all(f == 0.0 for f in fracs):
        return ". It was never larger."
    return "."


def _bound_lines(runs: list[dict]) -> list[str]:
    lines = []
    for r in runs:
        for li, lay in enumerate(r["layers"]):
            if "shrink_bound" not in lay:
                continue
            holds = [v for v in lay["bound_holds_frac"] if v is not None]
            ratio = _median_ratio(lay["shrink_bound"], lay["shrink_measured"])
            lines.append(
                f"- {r['label']} layer {li}: the bound held for "
                f"{100 * statistics.mean(holds):.1f}% of (step, sample) pairs; median bound / "
                f"measured = {fmt(ratio)}."
            )
    return lines


def write_gradients(result: dict, out: Path) -> list[Path]:
    """``gradients.json``, ``gradients_*.png`` and ``report.md`` in ``out``."""
    out = Path(out)
    cfg, runs = result["config"], result["runs"]
    written = [atomic_write_json(out / "gradients.json", result)]
    for key, ylabel, title in PLOTS:
        written.append(
            plots.gradient_curves(
                runs, key, out / f"gradients_{key}.png", ylabel=ylabel, title=title
            )
        )
    written.append(_entropy_plot(runs, out / "gradients_entropy.png"))
    written.append(_shrink_bound_plot(runs, out / "gradients_shrink_bound.png"))
    written.append(plots.loss_curves(runs, out / "gradients_loss.png"))
    lines = [
        "# Gradient flow during training",
        "",
        f"Task: {cfg['task']}. Model: {cfg['layers']} {cfg['model']}; width {cfg['width']}, "
        f"{cfg['heads']} heads, batch {cfg['batch']}, {cfg['steps']} steps, lr {cfg['lr']:g}, "
        f"seed {cfg['seed']} (same initial seed and batches for every variant). Chance loss "
        f"{fmt(cfg['chance_loss'])} nats. Gradient norms are taken before clipping.",
        "",
        "| run | logit maps | first loss | last loss | diverged at step |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        first, last = (r["loss"][0], r["loss"][-1]) if r["loss"] else (None, None)
        lines.append(
            f"| {r['label']} | {', '.join(r['logit_names'])} | {fmt(first)} | {fmt(last)} "
            f"| {r['diverged_at_step'] if r['diverged_at_step'] is not None else '-'} |"
        )
    lines += ["", "## Gradient norm at the attention logits, compared with softmax", ""]
    lines += ["All logit maps of a layer together (daGPAM: S_pos and S_neg; diff: S1 and S2):", ""]
    lines += comparison_lines(runs, "logit_grad_norm", "logit-gradient norm was")
    lines += dagpam_map_lines(runs)
    lines += ["", "## Gradient norm at the layer input, compared with softmax", ""]
    lines += comparison_lines(runs, "input_grad_norm", "input-gradient norm was")
    lines += [
        "",
        "## Dong et al.'s single-layer bound (softmax) vs the measured shrink",
        "",
        f"gamma = {cfg['gamma']:g} ({cfg['gamma_note']}). The bound is evaluated on the actual "
        "attention input (after LayerNorm) and weights at each recorded step.",
        "",
    ]
    lines += _bound_lines(runs) or ["- (no softmax run)"]
    lines += ["", "Median measured shrink per run (all layers and steps):", ""]
    for r in runs:
        vals = [v for lay in r["layers"] for v in lay.get("shrink_measured", []) if v is not None]
        if vals and all(math.isfinite(v) for v in vals):
            lines.append(f"- {r['label']}: {fmt(statistics.median(vals))}")
    lines += ["", "Plots: " + ", ".join(f"`{p.name}`" for p in written[1:]), ""]
    written.append(atomic_write_text(out / "report.md", "\n".join(lines)))
    return written
