"""Outputs shared by training and evaluation: summary JSON, loss-curve PNG and report.md."""

from __future__ import annotations

import shutil
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
    ``train.json`` and ``report.md``.

    ``model/`` holds the weights ``gpam eval`` / ``generate`` / ``translate`` load: the last
    step's, or with early stopping (``res["best_weights"]`` set) the best validation loss's, and
    then ``model-last/`` holds the last step's. ``res`` gains ``model_step`` (the step whose
    weights ``model/`` holds).
    """
    from gpam.models import save_pretrained

    best = res.pop("best_weights", None)
    if best is not None:
        _copy_folder(Path(best), out / "model")
        save_pretrained(model, out / "model-last")
        tokenizer.save(out / "model-last" / "tokenizer.json")
        res["model_step"] = res["best_step"]
        saved = (
            f"model: model/ = the best validation weights (step {res['best_step']}, loss "
            f"{res['best_val_loss']:.4f}), model-last/ = the last step's ({res['steps']}); "
            "gpam.models.from_pretrained"
        )
    else:
        save_pretrained(model, out / "model")
        shutil.rmtree(out / "model-last", ignore_errors=True)  # of an earlier run, if any
        res["model_step"] = res["steps"]
        saved = f"model: model/ (step {res['steps']}; gpam.models.from_pretrained)"
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
        *[f"resumed at step {r['step']}: {_changes(r['changed'])}" for r in res.get("resumes", [])],
        f"{saved}, curve: loss.png",
    ]
    write_report(out, "train", command, res, lines)


def _changes(changed: dict[str, list]) -> str:
    return ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())


def _copy_folder(src: Path, dst: Path) -> None:
    """Copy the files of ``src`` into ``dst`` (created), each written atomically."""
    from gpam._io import atomic_write_bytes

    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            atomic_write_bytes(dst / f.name, f.read_bytes())
