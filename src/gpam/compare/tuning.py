"""A learning rate per setting (``gpam compare ... --lrs``), then the comparison at it.

:func:`run_tuned` trains every setting of the grid at every rate of ``lrs`` on the tune seeds
(ordinary runs of :func:`gpam.compare.runner.run_grid`, in ``out/tune/lr=<rate>/``: resumable
and reused like any run), chooses per setting the rate with the best mean **validation** final
metric over the tune seeds (``val_final_metric``; a non-finite value counts as the worst), then
trains every seed at its setting's rate in ``out/`` (a tune run whose settings match the final
run is copied, not trained again). The kind should carry a test split
(:mod:`gpam.compare.test_split`) so the final numbers come from data that chose nothing.
``report.md`` gains a section with the validation metric per rate, the chosen rates and a
warning per setting whose rate lies at the edge of the grid; the plot is ``lr_curves.png``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gpam._io import atomic_write_json
from gpam.compare.grid import CompareConfig

RunFn = Callable[..., dict[str, Any]]


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better (perplexity, loss)."""
    return metric in ("perplexity", "loss")


def validation_value(run: dict[str, Any]) -> float:
    """A run's final validation metric (``val_final_metric``, else ``final_metric`` when the
    kind has no test split)."""
    return float(run.get("val_final_metric", run["final_metric"]))


def choose_lrs(
    curves: dict[str, dict[float, float]], metric: str
) -> tuple[dict[str, float], list[str]]:
    """``({label: chosen rate}, labels whose rate is the grid's smallest or largest)`` from
    ``curves[label][lr]`` = mean validation metric; a non-finite value never wins."""
    sign = 1.0 if lower_is_better(metric) else -1.0
    chosen, edge = {}, []
    for label, by_lr in curves.items():
        scores = {lr: sign * v if math.isfinite(v) else math.inf for lr, v in by_lr.items()}
        best = min(sorted(by_lr), key=scores.__getitem__)
        chosen[label] = best
        if len(by_lr) > 1 and best in (min(by_lr), max(by_lr)):
            edge.append(label)
    return chosen, edge


def check_tuning(lrs: list[float], tune_seeds: list[int]) -> None:
    """ValueError naming ``lrs`` or ``tune_seeds`` when they are not a usable tuning grid."""
    if not lrs or any(not (x > 0 and math.isfinite(x)) for x in lrs):
        raise ValueError(f"lrs must be positive numbers, got {lrs}")
    if len(set(lrs)) != len(lrs):
        raise ValueError(f"lrs must be distinct, got {lrs}")
    if not tune_seeds or len(set(tune_seeds)) != len(tune_seeds):
        raise ValueError(f"tune_seeds must be distinct integers, got {tune_seeds}")


def _tune_dir(out: Path, lr: float) -> Path:
    return out / "tune" / f"lr={lr:g}"


def tune(
    config: CompareConfig,
    kind: Any,
    out: Path,
    lrs: list[float],
    tune_seeds: list[int],
    progress: bool = True,
    run: RunFn | None = None,
) -> dict[str, Any]:
    """Train the grid at every rate on ``tune_seeds`` and choose a rate per setting (see the
    module docstring); returns the ``tuning`` document (also stored in ``results.json``)."""
    from gpam.compare.runner import run_grid

    run = run or run_grid
    check_tuning(lrs, tune_seeds)
    curves: dict[str, dict[float, float]] = {}
    per_seed: dict[str, dict[str, dict[str, float]]] = {}
    for lr in sorted(lrs):
        cfg = dataclasses.replace(
            config, seeds=list(tune_seeds), train=dataclasses.replace(config.train, lr=lr)
        )
        res = run(cfg, kind, _tune_dir(out, lr), progress)
        for r in res["runs"].values():
            if r.get("status") != "done" or r["seed"] not in tune_seeds:
                continue
            per_seed.setdefault(r["label"], {}).setdefault(f"{lr:g}", {})[str(r["seed"])] = (
                validation_value(r)
            )
    metric = kind.metric
    for label, by_lr in per_seed.items():
        curves[label] = {float(k): float(np.mean(list(v.values()))) for k, v in by_lr.items()}
    chosen, edge = choose_lrs(curves, metric)
    return {
        "lrs": sorted(float(x) for x in lrs),
        "tune_seeds": list(tune_seeds),
        "metric": metric,
        "split": "validation",
        "curves": {lab: {f"{k:g}": v for k, v in c.items()} for lab, c in curves.items()},
        "per_seed": per_seed,
        "chosen": chosen,
        "edge": edge,
    }


def reuse_tune_runs(out: Path, tuning: dict[str, Any]) -> int:
    """Copy each tune run at its setting's chosen rate into ``out/results.json`` (the final
    grid then skips it while its run hash matches); returns how many were copied."""
    from gpam.compare.runner import load_results

    results = load_results(out)
    runs = results.setdefault("runs", {})
    n = 0
    for label, lr in tuning["chosen"].items():
        src = load_results(_tune_dir(out, lr))["runs"]
        for key, r in src.items():
            same = runs.get(key, {}).get("run_hash") == r.get("run_hash")
            if r.get("label") == label and r.get("status") == "done" and not same:
                runs[key] = dict(r)
                n += 1
    if n:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "results.json", results)
    return n


def run_tuned(
    config: CompareConfig,
    kind: Any,
    out: str | os.PathLike,
    lrs: list[float],
    tune_seeds: list[int],
    progress: bool = True,
    final: RunFn | None = None,
) -> dict[str, Any]:
    """Tune the learning rate per setting, then train every seed at it; ``final(config, kind,
    out, progress, lrs=...)`` trains the final grid (default :func:`run_grid`; e.g. the
    seeds-by-power loop of :mod:`gpam.compare.power`). Returns the results document with its
    ``tuning`` entry; ``report.md`` gains the tuning section."""
    from gpam.compare.runner import run_grid

    config.validate()
    out = Path(out)
    tuning = tune(config, kind, out, lrs, tune_seeds, progress)
    reuse_tune_runs(out, tuning)
    results = (final or run_grid)(config, kind, out, progress, lrs=tuning["chosen"])
    results["tuning"] = tuning
    atomic_write_json(out / "results.json", results)
    write_tuning_section(results, out)
    return results


def tuning_text(tuning: dict[str, Any], test: str | None) -> list[str]:
    """Markdown lines of the tuning section."""
    lrs = tuning["lrs"]
    head = "| setting | " + " | ".join(f"lr {x:g}" for x in lrs) + " | chosen |"
    lines = [
        "## Learning rate per setting",
        "",
        f"Each setting trained at every rate on tune seed(s) {tuning['tune_seeds']}; the rate "
        f"with the best mean validation {tuning['metric']} was chosen and every seed trained at "
        "it. The final numbers above come from "
        + (test or "the kind's own final metric")
        + ", which chose nothing (the equal-steps view is that final test metric, every run "
        "at the same step count; the equal-time view reads the validation curves). Validation "
        f"{tuning['metric']} per rate:",
        "",
        head,
        "| --- | " + " | ".join("---" for _ in lrs) + " | --- |",
    ]
    for label, curve in tuning["curves"].items():
        cells = [f"{curve[f'{x:g}']:.4g}" if f"{x:g}" in curve else "—" for x in lrs]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {tuning['chosen'][label]:g} |")
    lines.append("")
    for label in tuning["edge"]:
        lines.append(
            f"**Warning:** {label}'s chosen rate {tuning['chosen'][label]:g} lies at the edge of "
            f"the grid {[float(f'{x:g}') for x in lrs]}: its best rate may lie outside it."
        )
    if tuning["edge"]:
        lines.append("")
    if len(lrs) == 1:
        lines += ["One rate only: nothing was tuned.", ""]
    lines += ["![lr_curves](lr_curves.png)", ""]
    return lines


def _test_note(results: dict[str, Any]) -> str | None:
    test = (results.get("task") or {}).get("test")
    if not test:
        return None
    if test.get("split") == "seeded":
        return f"a separately seeded test set (batch seeds {test['seed']} + i)"
    if test.get("split") == "text":
        return f"the test split ({test['test_tokens']:,} tokens; {test.get('source', 'text')})"
    return f"the test split ({test.get('test_pairs', '?')} sentence pairs; {test.get('source')})"


def write_tuning_section(results: dict[str, Any], out: Path) -> None:
    """Append the tuning section to ``out/report.md`` and draw ``out/lr_curves.png``."""
    tuning = results["tuning"]
    plot_lr_curves(tuning, out / "lr_curves.png", _styles(results))
    path = out / "report.md"
    text = path.read_text() if path.is_file() else ""
    path.write_text(
        text.rstrip("\n") + "\n\n" + "\n".join(tuning_text(tuning, _test_note(results)))
    )


def _styles(results: dict[str, Any]) -> dict[str, dict]:
    """The report's plot style per label (each variant's fixed colour), or none."""
    from gpam.compare.report import label_styles

    try:
        return label_styles(results)
    except (KeyError, TypeError):  # no summary yet: matplotlib's colours
        return {}


def plot_lr_curves(
    tuning: dict[str, Any], path: Path, styles: dict[str, dict] | None = None
) -> Path:
    """Validation metric against learning rate (log axis), one line per setting (``styles``:
    ``plot`` keywords per label, as the report's other plots), the chosen rate marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in tuning["curves"].items():
        xs = sorted(float(k) for k in curve)
        ys = [curve[f"{x:g}"] for x in xs]
        style = {"marker": "o", **(styles or {}).get(label, {})}
        (line,) = ax.plot(xs, ys, label=label, **style)
        best = tuning["chosen"][label]
        ax.plot([best], [curve[f"{best:g}"]], marker="*", ms=14, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel(f"validation {tuning['metric']} (mean over tune seeds)")
    ax.set_title("learning rate per setting (star: chosen)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
