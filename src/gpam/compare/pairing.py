"""The report's pairing section: per setting, how strongly its final metric moves with
softmax's over the shared seeds, and the paired std against the std two independent runs'
difference would have (what paired seeds, initialisation included, bought)."""

from __future__ import annotations

import math
from typing import Any

from gpam.compare.stats import pairing_gain


def pairing_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One :func:`gpam.compare.stats.pairing_gain` of final metrics per non-softmax label
    (runs of the grid's seeds that finished, paired with softmax's by seed)."""
    seeds = set(results.get("config", {}).get("seeds", []))
    labels = [r["label"] for r in results.get("summary", {}).get("variants", [])]
    by_label: dict[str, dict[int, float]] = {lab: {} for lab in labels}
    for run in results.get("runs", {}).values():
        if run.get("status") == "done" and run.get("label") in by_label and run["seed"] in seeds:
            by_label[run["label"]][run["seed"]] = float(run["final_metric"])
    base = by_label.get("softmax", {})
    rows = []
    for lab in labels:
        if lab == "softmax":
            continue
        common = sorted(s for s in by_label[lab] if s in base)
        if len(common) < 2:
            continue
        gain = pairing_gain([by_label[lab][s] for s in common], [base[s] for s in common])
        rows.append({"label": lab, **gain})
    return rows


def _g(x: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}g}"


def pairing_text(results: dict[str, Any]) -> list[str]:
    """``report.md`` lines of the pairing section (empty without a pair of seeds)."""
    rows = pairing_rows(results)
    if not rows:
        return []
    metric = results["summary"]["metric"]
    lines = [
        "## Pairing",
        "",
        f"Runs of one seed share the data order and every parameter two settings have in common "
        f"(paired initialisation, `gpam.models.paired_init_`). r: Pearson correlation of the "
        f"final {metric} with softmax's over the seeds; paired std: std of the per-seed "
        "differences (the Δ column's); unpaired std: sqrt(s_variant² + s_softmax²), the std "
        "the difference of two independent runs would have; ratio < 1 is what pairing bought "
        "(the CI half-width and MDE shrink by the same factor).",
        "",
        "| variant | n | r | paired std | unpaired std | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cells = [r["label"], str(r["n"]), _g(r["pearson_r"]), _g(r["paired_std"])]
        cells += [_g(r["unpaired_std"]), _g(r["ratio"])]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]
