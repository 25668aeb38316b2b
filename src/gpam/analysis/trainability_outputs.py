"""Writing ``gpam analyze trainability`` results: ``trainability.json``, heat maps, the loss
against skip weight plot and ``report.md`` (every sentence computed from the numbers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from gpam._io import atomic_write_json, atomic_write_text
from gpam.analysis import plots
from gpam.analysis.report import fmt
from gpam.analysis.trainability_derive import CONFIDENCE

plt = plots.plt


def _labels(rows: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(r["label"] for r in rows))


def heatmaps(rows: Sequence[dict], depth: int, path: Path) -> Path:
    """Mean held-out loss / unigram loss over (qk gain x skip weight), one panel per setting;
    grid points that train are marked with a white frame and their value in bold."""
    rows = [r for r in rows if r["depth"] == depth]
    labels = _labels(rows)
    gains = sorted({r["qk_gain"] for r in rows})
    skips = sorted({r["skip_weight"] for r in rows})
    cell = {(r["label"], r["qk_gain"], r["skip_weight"]): r for r in rows}
    cols = min(4, len(labels))
    n_rows = math.ceil(len(labels) / cols)
    fig, axes = plt.subplots(
        n_rows, cols, figsize=(3.4 * cols + 1.2, 3.0 * n_rows + 0.6), squeeze=False,
        constrained_layout=True,
    )  # fmt: skip
    image = None
    for idx, label in enumerate(labels):
        ax = axes[idx // cols][idx % cols]
        data = []
        for a in skips:
            line = []
            for g in gains:
                r = cell.get((label, g, a))
                v = None if r is None else r["rel_unigram"]
                line.append(math.nan if v is None else v)
            data.append(line)
        image = ax.imshow(data, origin="lower", aspect="auto", vmin=0.5, vmax=1.05, cmap="magma")
        for i, a in enumerate(skips):
            for j, g in enumerate(gains):
                r = cell.get((label, g, a))
                if r is None or r["rel_unigram"] is None:
                    continue
                good = r["trains"]
                ax.text(
                    j, i, f"{r['rel_unigram']:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if r["rel_unigram"] > 0.85 else "white",
                    fontweight="bold" if good else "normal",
                )  # fmt: skip
                if good:
                    ax.add_patch(
                        plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="white", lw=2)
                    )
        ax.set_xticks(range(len(gains)), [f"{g:g}" for g in gains], fontsize=7)
        ax.set_yticks(range(len(skips)), [f"{a:g}" for a in skips], fontsize=7)
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("qk gain", fontsize=7)
        ax.set_ylabel("skip weight a", fontsize=7)
    for idx in range(len(labels), n_rows * cols):
        axes[idx // cols][idx % cols].axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="held-out loss / unigram loss")
    fig.suptitle(f"trainability at depth {depth} (framed: trains)")
    return plots._save(fig, path)


def loss_plot(rows: Sequence[dict], depth: int, unigram: float, path: Path) -> Path:
    """Mean held-out loss (error bars: std over seeds) against skip weight, one panel per qk
    gain, one line per setting; the unigram loss dashed."""
    rows = [r for r in rows if r["depth"] == depth]
    gains = sorted({r["qk_gain"] for r in rows})
    labels = _labels(rows)
    fig, axes = plt.subplots(1, len(gains), figsize=(4.6 * len(gains), 4.2), squeeze=False)
    variant_of = {r["label"]: r.get("variant", r["label"]) for r in rows}
    # one fixed colour per variant, as every plot (several settings of one: line style, marker)
    styles = dict(zip(labels, plots.series_styles([variant_of[lab] for lab in labels])))
    for j, g in enumerate(gains):
        ax = axes[0][j]
        for label in labels:
            rs = sorted(
                (r for r in rows if r["label"] == label and r["qk_gain"] == g),
                key=lambda r: r["skip_weight"],
            )
            x = [r["skip_weight"] for r in rs]
            y = [math.nan if r["val_loss_mean"] is None else r["val_loss_mean"] for r in rs]
            err = [r["val_loss_std"] or 0.0 for r in rs]
            ax.errorbar(x, y, yerr=err, ms=3, capsize=2, label=label, **styles[label])
        ax.axhline(unigram, color="grey", ls=":", lw=1.2, label="unigram loss")
        ax.set_title(f"qk gain {g:g}", fontsize=9)
        ax.set_xlabel("skip weight a around attention")
        ax.set_ylabel("held-out loss (nats / char)")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=6, loc="best")
    fig.suptitle(f"held-out loss against the attention skip weight, depth {depth}")
    fig.tight_layout()
    return plots._save(fig, path)


def _ci(p: dict | None) -> str:
    if not p or p.get("mean") is None:
        return "n/a"
    if p.get("ci_low") is None:
        return f"{p['mean']:+.3f}"
    return f"{p['mean']:+.3f} [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}]"


def smallest_table(smallest: Sequence[dict], depth: int) -> str:
    """Markdown: smallest skip weight that trains per setting (rows) and qk gain (columns), and
    the paired loss difference to softmax there."""
    rows = [s for s in smallest if s["depth"] == depth]
    gains = sorted({s["qk_gain"] for s in rows})
    by = {(s["label"], s["qk_gain"]): s for s in rows}
    head = "| setting | " + " | ".join(f"g={g:g}: smallest a / vs softmax" for g in gains) + " |"
    lines = [head, "| --- |" + " --- |" * len(gains)]
    for label in _labels(rows):
        parts = []
        for g in gains:
            s = by[(label, g)]
            a = s["smallest_skip_weight"]
            text = "none" if a is None else f"{a:g}"
            if a is not None and s["variant"] != "softmax":
                text += f" / {_ci(s['vs_softmax_there'])}"
            parts.append(text)
        lines.append(f"| {label} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def cell_table(rows: Sequence[dict], depth: int) -> str:
    """Markdown: every grid point of one depth."""
    lines = [
        "| setting | qk gain | a | held-out loss (mean +- std) | / unigram | / a=1 | trains | "
        "vs softmax (95% CI) | q-grad first -> last (min, max) | stack residual init -> final | "
        "Jacobian/uniform init -> final |",
        "| --- |" + " --- |" * 10,
    ]
    for r in rows:
        if r["depth"] != depth:
            continue
        loss = f"{fmt(r['val_loss_mean'])} +- {fmt(r['val_loss_std'])}"
        vs = "" if r["variant"] == "softmax" else _ci(r["vs_softmax"])
        qg = (
            f"{fmt(r['q_grad_first'])} -> {fmt(r['q_grad_last'])} ({fmt(r['q_grad_min'])}, "
            f"{fmt(r['q_grad_max'])})"
        )
        lines.append(
            f"| {r['label']} | {r['qk_gain']:g} | {r['skip_weight']:g} | {loss} | "
            f"{fmt(r['rel_unigram'])} | {fmt(r['rel_skip1'])} | {'yes' if r['trains'] else 'no'} "
            f"| {vs} | {qg} | {fmt(r['residual_stack_init'])} -> "
            f"{fmt(r['residual_stack_final'])} | {fmt(r['jacobian_rel_init'])} -> "
            f"{fmt(r['jacobian_rel_final'])} |"
        )
    return "\n".join(lines)


def _skip(a: float | None) -> str:
    return "none" if a is None else f"{a:g}"


def onset_sentences(smallest: Sequence[dict], skips: Sequence[float]) -> list[str]:
    """Per setting and depth: the smallest skip weight that trains at each qk gain."""
    out = []
    groups: dict[tuple, list[dict]] = {}
    for s in smallest:
        groups.setdefault((s["label"], s["depth"]), []).append(s)
    for (label, depth), ss in groups.items():
        ss = sorted(ss, key=lambda s: s["qk_gain"])
        if all(s["smallest_skip_weight"] is None for s in ss):
            out.append(f"{label} (depth {depth}) trains at no grid point.")
            continue
        parts = [f"{_skip(s['smallest_skip_weight'])} at qk gain {s['qk_gain']:g}" for s in ss]
        out.append(
            f"{label} (depth {depth}): smallest skip weight that trains {', '.join(parts)} "
            f"(grid: {', '.join(f'{a:g}' for a in skips)})."
        )
    return out


def summary_sentence(rows: Sequence[dict], skips: Sequence[float]) -> str:
    """How many grid points train, and at the smallest skip weight which settings do."""
    n = sum(r["trains"] for r in rows)
    low = min(skips)
    at_low = sorted({r["label"] for r in rows if r["trains"] and r["skip_weight"] == low})
    text = f"{n} of {len(rows)} grid points train."
    if not n:
        return text + " No setting trains anywhere on this grid."
    if at_low:
        return text + f" At skip weight {low:g}: {', '.join(at_low)}."
    return text + f" No setting trains at skip weight {low:g}."


def grad_sentence(rows: Sequence[dict], skips: Sequence[float]) -> str:
    """The first layer's query gradient at the smallest skip weight against skip weight 1."""
    low = min(skips)
    pairs = []
    index = {(r["label"], r["depth"], r["qk_gain"], r["skip_weight"]): r for r in rows}
    for r in rows:
        ref = index.get((r["label"], r["depth"], r["qk_gain"], 1.0))
        if r["skip_weight"] != low or ref is None or low == 1.0:
            continue
        if r["q_grad_last"] is not None and ref["q_grad_last"] is not None:
            pairs.append((r, ref))
    if not pairs:
        return ""
    shrink = [r["q_grad_last"] / r["q_grad_first"] for r, _ in pairs if r["q_grad_first"]]
    ref_shrink = [f["q_grad_last"] / f["q_grad_first"] for _, f in pairs if f["q_grad_first"]]
    if not shrink or not ref_shrink:
        return ""
    return (
        f"First layer's query-gradient norm, last step over first step (median over settings, "
        f"depths and gains): {fmt(sorted(shrink)[len(shrink) // 2])} at skip weight {low:g}, "
        f"{fmt(sorted(ref_shrink)[len(ref_shrink) // 2])} at skip weight 1."
    )


def write_trainability(result: dict, out: Path) -> list[Path]:
    """``trainability.json``, ``trainability_heatmap_d<depth>.png``,
    ``trainability_loss_d<depth>.png`` and ``report.md`` in ``out``."""
    out = Path(out)
    cfg, rows, smallest = result["config"], result["summary"], result["smallest_skip"]
    written = [atomic_write_json(out / "trainability.json", result)]
    corpus = result["corpus"]
    unigram = corpus["unigram_loss"]
    t = result["timing"]
    lines = [
        "# Where attention still learns as its skip connection weakens "
        "(`gpam analyze trainability`)",
        "",
        f"Character LM on {corpus['name']} ({corpus['train_tokens']} training / "
        f"{corpus['eval_tokens']} held-out characters scored, vocabulary {corpus['vocab_size']}): "
        f"blocks `X = a X + SA(rmsnorm(X))`, `X = X + MLP(rmsnorm(X))`, width {cfg['width']}, "
        f"{cfg['heads']} heads, depths {', '.join(str(d) for d in cfg['depths'])}; W_Q, W_K "
        f"(and a separate negative-query projection) times the qk gain at initialisation; "
        f"{cfg['steps']} AdamW steps (lr {cfg['lr']:g}, batch {cfg['batch']} x {cfg['length']}) "
        f"per cell; seeds {', '.join(str(s) for s in cfg['seeds'])}; "
        f"{t['cells']} cells ({t['reused']} read back from an earlier run), {t['wall_s']:.0f} s "
        f"wall for this call; the cells' own training took {t['cells_wall_s']:.0f} s wall in all.",
        "",
        f"Unigram loss of the held-out text: {unigram:.4f} nats. {result['rule']}",
        "",
        summary_sentence(rows, cfg["skip_weights"]),
        "",
    ]
    lines += [f"- {s}" for s in onset_sentences(smallest, cfg["skip_weights"])]
    grad = grad_sentence(rows, cfg["skip_weights"])
    if grad:
        lines += ["", grad]
    lines.append("")
    for d in cfg["depths"]:
        lines += [
            f"## Depth {d}",
            "",
            "Smallest skip weight that trains, and there the paired held-out loss difference "
            f"to softmax (mean [{CONFIDENCE:.0%} CI], negative: lower loss than softmax):",
            "",
            smallest_table(smallest, d),
            "",
        ]
        name = f"trainability_heatmap_d{d}.png"
        written.append(heatmaps(rows, d, out / name))
        loss_name = f"trainability_loss_d{d}.png"
        written.append(loss_plot(rows, d, unigram, out / loss_name))
        lines += [f"![heat maps depth {d}]({name})", "", f"![loss depth {d}]({loss_name})", ""]
        lines += [cell_table(rows, d), ""]
    written.append(atomic_write_text(out / "report.md", "\n".join(lines)))
    return written
