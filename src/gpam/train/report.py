"""Outputs shared by training and evaluation: summary JSON, loss-curve PNG and report.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpam._io import atomic_write_json, atomic_write_text


def plot_loss(history: list[dict], path: Path, title: str) -> Path | None:
    """Training (and validation) loss against step; log-scale y when it spans a decade."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = [(r["step"], r["loss"]) for r in history if "loss" in r]
    va = [(r["step"], r["val_loss"]) for r in history if "val_loss" in r]
    if not tr and not va:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    if tr:
        ax.plot(*zip(*tr), label="train")
    if va:
        ax.plot(*zip(*va), "o-", label="validation")
    vals = [v for _, v in tr + va if v > 0]
    if vals and max(vals) / min(vals) > 10:
        ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    out: Path, name: str, title: str, summary: dict[str, Any], lines: list[str]
) -> None:
    """Write ``out/<name>.json`` (``summary``) and ``out/report.md`` (title + bullet lines)."""
    atomic_write_json(out / f"{name}.json", summary)
    md = [f"# {title}", ""] + [f"- {ln}" for ln in lines] + [""]
    atomic_write_text(out / "report.md", "\n".join(md))


def params_line(report: dict[str, Any]) -> str:
    """``N parameters (+E over softmax attention, +P %)``."""
    return (
        f"{report['total']:,} parameters ({report['extra']:+,} over the same model with "
        f"softmax attention, {report['overhead_pct']:+.3f} %)"
    )


def finish_run(
    out: Path,
    model: Any,
    tokenizer: Any,
    res: dict[str, Any],
    command: str,
    attention: str,
    tokens_name: str,
    extra: list[str],
) -> None:
    """Rank 0's outputs of a training run: ``model/`` (weights, config, tokenizer), ``loss.png``,
    ``train.json`` and ``report.md``."""
    from gpam.models import save_pretrained

    save_pretrained(model, out / "model")
    tokenizer.save(out / "model" / "tokenizer.json")
    plot_loss(res["history"], out / "loss.png", f"{command}, {attention} attention")
    v = res["final_val_loss"]
    lines = [
        f"attention: {attention}; {params_line(res['parameters'])}",
        f"steps: {res['steps']} ({res['stopped']}), {res['elapsed_s']:.1f} s of training "
        f"({res['budget_clock']} clock), {res['tokens']:,} {tokens_name}",
        f"final validation loss: {v:.4f} nats/token" if v is not None else "no eval",
        *extra,
        *res["data_notes"],
        "model: model/ (gpam.models.from_pretrained), curve: loss.png",
    ]
    write_report(out, "train", command, res, lines)
