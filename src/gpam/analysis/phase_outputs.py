"""Writing ``gpam analyze phase`` results: ``phase.json``, the plots and ``report.md``.

Every sentence of the report is computed from the numbers in the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from gpam._io import atomic_write_json, atomic_write_text
from gpam.analysis import plots
from gpam.analysis.report import fmt

plt = plots.plt


def layer_mean(values: Sequence[float | None]) -> float | None:
    """Mean of a per-layer list; None if any entry is None or the list is empty."""
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]


def _groups(results: Sequence[dict], arch: str, vo: float) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in results:
        if r["architecture"] == arch and r["vo_gain"] == vo:
            out.setdefault(r["label"], []).append(r)
    return {k: sorted(v, key=lambda r: r["qk_gain"]) for k, v in out.items()}


def dilemma_plot(results: Sequence[dict], arch: str, vo: float, threshold: float, path: Path):
    """Final residual and mean Jacobian against qk gain: each variant in its fixed colour
    (:func:`gpam.analysis.plots.series_styles`; several settings of one variant differ in line
    style and marker), the threshold and the uniform row in the legends, readable log ticks."""
    groups = _groups(results, arch, vo)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharex=True)
    styles = plots.series_styles([rows[0]["variant"] for rows in groups.values()])
    finals: list[float | None] = []
    jacs: list[float | None] = []
    for (label, rows), style in zip(groups.items(), styles):
        g = [r["qk_gain"] for r in rows]
        final = [r["residual_fro_mean"][-1] for r in rows]
        finals += final
        axes[0].plot(g, plots._positive(final), ms=3, label=label, **style)
        jac = [layer_mean(r["jacobian_rel_mean"]) for r in rows]
        if any(v is not None for v in jac):
            jacs += jac
            axes[1].plot(g, plots._positive(jac), ms=3, label=label, **style)
    axes[0].axhline(
        threshold, color="grey", ls=":", lw=1.2, label=f"threshold {threshold:g} (out of collapse)"
    )
    axes[0].set_ylabel("final relative residual ||res(X_L)||_F / ||X_L||_F")
    plots.log_y(axes[0], [*finals, threshold])
    axes[1].axhline(1.0, color="grey", ls="--", lw=1.2, label="uniform row (1)")
    axes[1].set_ylabel("logit Jacobian / uniform row (mean over layers)")
    plots.log_y(axes[1], [*jacs, 1.0])
    for ax in axes:
        ax.set_xscale("log", base=2)
        plots.plain_labels(ax.xaxis)  # one tick per power of two, labelled 0.5, 1, 2, ...
        ax.set_xlabel("qk gain (W_Q, W_K multiplied by)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    handles, labels = axes[1].get_legend_handles_labels()
    axes[1].legend(handles[-1:], labels[-1:], fontsize=7, loc="best")  # colours as on the left
    fig.suptitle(f"rank collapse vs saturation: {arch}, vo gain {vo:g}")
    fig.tight_layout()
    return plots._save(fig, path)


def heatmaps(results: Sequence[dict], arch: str, path: Path):
    """Final residual over (qk gain x vo gain), one panel per setting."""
    labels = list(dict.fromkeys(r["label"] for r in results if r["architecture"] == arch))
    qks = sorted({r["qk_gain"] for r in results})
    vos = sorted({r["vo_gain"] for r in results})
    cols = min(4, len(labels))
    rows_n = math.ceil(len(labels) / cols)
    fig, axes = plt.subplots(
        rows_n, cols, figsize=(3.8 * cols + 1.0, 3.2 * rows_n + 0.6), squeeze=False,
        constrained_layout=True,
    )  # fmt: skip
    cell = {
        (r["label"], r["qk_gain"], r["vo_gain"]): r for r in results if r["architecture"] == arch
    }
    image = None
    for idx, label in enumerate(labels):
        ax = axes[idx // cols][idx % cols]
        grid = [
            [
                (cell[(label, q, v)]["residual_fro_mean"][-1] if (label, q, v) in cell else None)
                for q in qks
            ]
            for v in vos
        ]
        data = [[math.nan if x is None else x for x in row] for row in grid]
        image = ax.imshow(data, origin="lower", aspect="auto", vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(qks)), [f"{q:.3g}" for q in qks], fontsize=6, rotation=90)
        ax.set_yticks(range(len(vos)), [f"{v:.3g}" for v in vos], fontsize=6)
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("qk gain", fontsize=7)
        ax.set_ylabel("vo gain", fontsize=7)
    for idx in range(len(labels), rows_n * cols):
        axes[idx // cols][idx % cols].axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="final relative residual")
    fig.suptitle(f"final residual over the gains: {arch}")
    return plots._save(fig, path)


def critical_markdown(critical: Sequence[dict]) -> str:
    """Markdown table of the critical gains."""
    lines = [
        "| setting | architecture | vo gain | critical qk gain | Jacobian / uniform there "
        "| region quantity there | largest final residual |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in critical:
        g = "none" if c["critical_gain"] is None else fmt(c["critical_gain"])
        if c.get("at_first_gain"):
            g = f"<= {g}"
        lines.append(
            f"| {c['label']} | {c['architecture']} | {c['vo_gain']:g} | {g} | "
            f"{fmt(c['jacobian_rel_at_critical'])} | {fmt(c['region_quantity_at_critical'])} | "
            f"{fmt(c['max_final_residual'])} |"
        )
    return "\n".join(lines)


def critical_sentence(c: dict, threshold: float, top_gain: float) -> str:
    """One sentence per setting, computed from its critical-gain record."""
    name = f"{c['label']} ({c['architecture']}, vo gain {c['vo_gain']:g})"
    if c["critical_gain"] is None:
        text = (
            f"{name}: the final residual stays below {threshold:g} up to qk gain {top_gain:g} "
            f"(largest {fmt(c['max_final_residual'])}): it collapses everywhere on this grid"
        )
        jac = c.get("jacobian_rel_at_max_gain")
        if jac is not None:
            state = "above" if jac > 1 else "at or below"
            text += f"; at qk gain {top_gain:g} its logit Jacobian is {fmt(jac)}x uniform ({state})"
        return text + "."
    jac = c["jacobian_rel_at_critical"]
    reg = c["region_quantity_at_critical"]
    where = "already at the smallest qk gain," if c.get("at_first_gain") else "first at qk gain"
    text = f"{name}: the final residual reaches {threshold:g} {where} {fmt(c['critical_gain'])}"
    if jac is None:
        text += " (no logit Jacobian for this variant)"
    else:
        state = "above" if jac > 1 else "at or below"
        text += f", where its logit Jacobian is {fmt(jac)}x a uniform row's ({state} uniform)"
    if reg is not None:
        side = "outside" if reg >= 1 else "inside"
        text += f" and Lemma 1's quantity is {fmt(reg)} ({side} the region)"
    last = c.get("final_residual_at_max_gain")
    if last is not None and last < threshold:
        text += f"; at qk gain {top_gain:g} the final residual is back down to {fmt(last)}"
    return text + "."


def comparison_sentence(critical: Sequence[dict]) -> str:
    """Which setting leaves collapse at the smallest gain, and with the largest Jacobian there."""
    found = [c for c in critical if c["critical_gain"] is not None]
    if not found:
        return "No setting left rank collapse within the grid."
    first = min(found, key=lambda c: c["critical_gain"])
    text = (
        f"{len(found)} of {len(critical)} settings leave collapse within the grid; the earliest is "
        f"{first['label']} ({first['architecture']}, vo gain {first['vo_gain']:g}) at qk gain "
        f"{fmt(first['critical_gain'])}."
    )
    with_jac = [c for c in found if c["jacobian_rel_at_critical"] is not None]
    if with_jac:
        best = max(with_jac, key=lambda c: c["jacobian_rel_at_critical"])
        text += (
            f" The largest logit Jacobian where collapse ends is {best['label']}'s, "
            f"{fmt(best['jacobian_rel_at_critical'])}x uniform."
        )
        sat = [c["label"] for c in with_jac if c["jacobian_rel_at_critical"] <= 1]
        if sat:
            text += f" At or below uniform (saturating) there: {', '.join(sat)}."
    return text


def region_sentence(results: Sequence[dict], collapsed: float = 1e-3) -> str:
    """How often Lemma 1's condition (< 1) held where the stack did or did not collapse."""
    done = [r for r in results if r["region_quantity"] is not None]
    coll = [r for r in done if r["residual_fro_mean"][-1] < collapsed]
    inside = [r for r in done if r["region_quantity"] < 1]
    text = (
        f"Lemma 1's quantity is < 1 (inside the region, collapse guaranteed) in {len(inside)} of "
        f"{len(done)} cells; {len(coll)} cells collapsed (final residual < {collapsed:g})"
    )
    outside = [r for r in coll if r["region_quantity"] >= 1]
    if coll:
        text += f", {len(outside)} of them with the quantity >= 1"
        low = min(r["region_quantity"] for r in coll)
        text += f" (smallest quantity among collapsed cells {fmt(low)})"
    return text + "."


def write_phase(result: dict, out: Path) -> list[Path]:
    """``phase.json``, ``phase_dilemma_<arch>[_vo<g>].png``, ``phase_heatmap_<arch>.png`` (when
    more than one vo gain) and ``report.md`` in ``out``."""
    out = Path(out)
    cfg, results, critical = result["config"], result["results"], result["critical"]
    written = [atomic_write_json(out / "phase.json", result)]
    threshold = cfg["threshold"]
    top = max(cfg["qk_gains"])
    lines = [
        "# The dilemma across the logit scale (`gpam analyze phase`)",
        "",
        f"Stacks: depth {cfg['depth']}, length {cfg['length']}, width {cfg['width']}, heads "
        f"{cfg['heads']}, {cfg['trials']} trials x batch {cfg['batch']} (seeds {cfg['seed']}.."
        f"{cfg['seed'] + cfg['trials'] - 1}), {cfg['dtype']}; qk gains "
        f"{', '.join(f'{g:g}' for g in cfg['qk_gains'])}; vo gains "
        f"{', '.join(f'{g:g}' for g in cfg['vo_gains'])}. Definitions: `phase.json` config notes "
        "(gamma = 1 is an assumption in Lemma 1's quantity).",
        "",
        "## Critical gains",
        "",
        critical_markdown(critical),
        "",
        comparison_sentence(critical),
        "",
        region_sentence(results),
        "",
    ]
    lines += [f"- {critical_sentence(c, threshold, top)}" for c in critical]
    lines.append("")
    for arch in cfg["architectures"]:
        lines += [f"## {arch}", ""]
        for vo in cfg["vo_gains"]:
            suffix = "" if len(cfg["vo_gains"]) == 1 else f"_vo{vo:g}"
            name = f"phase_dilemma_{arch}{suffix}.png"
            written.append(dilemma_plot(results, arch, vo, threshold, out / name))
            lines += [f"![dilemma {arch} vo {vo:g}]({name})", ""]
        if len(cfg["vo_gains"]) > 1:
            name = f"phase_heatmap_{arch}.png"
            written.append(heatmaps(results, arch, out / name))
            lines += [f"![heat maps {arch}]({name})", ""]
        else:
            lines += ["(Heat maps need more than one vo gain: pass `--vo-gains`.)", ""]
    written.append(atomic_write_text(out / "report.md", "\n".join(lines)))
    return written
