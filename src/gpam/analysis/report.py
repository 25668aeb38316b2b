"""Markdown helpers: tables and sentences computed from measured numbers (nothing hard-coded)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

REPORT_LAYERS = (0, 2, 4, 8, 12)


def eps_of(dtype: str) -> float:
    """Machine epsilon of ``"float32"`` / ``"float64"``."""
    return torch.finfo(getattr(torch, dtype)).eps


def fmt(v: float | None) -> str:
    """Compact number for tables."""
    if v is None or not math.isfinite(v):
        return "n/a"
    if v == 0:
        return "0"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.2e}"


def report_layers(depth: int) -> list[int]:
    """Layers shown in tables: 0, 2, 4, 8, 12 within range, plus the last layer."""
    layers = [i for i in REPORT_LAYERS if i <= depth]
    if depth not in layers:
        layers.append(depth)
    return layers


def residual_table(results: Sequence[dict], key: str, depth: int, floor: float) -> str:
    """Markdown table: one row per setting, mean (± std) of ``key`` at the report layers.

    Means below ``floor`` (1000 machine epsilons) are marked ``*``: they sit at round-off level.
    """
    layers = report_layers(depth)
    head = "| setting | " + " | ".join(f"layer {i}" for i in layers) + " |"
    sep = "| --- |" + " --- |" * len(layers)
    rows = [head, sep]
    for r in results:
        cells = []
        for i in layers:
            m, s = r[f"{key}_mean"][i], r[f"{key}_std"][i]
            mark = "*" if m is not None and m < floor else ""
            cells.append(f"{fmt(m)}{mark} ± {fmt(s)}")
        rows.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def first_below(values: Sequence[float | None], threshold: float) -> int | None:
    """First index whose value is below ``threshold`` (None if never)."""
    for i, v in enumerate(values):
        if v is not None and v < threshold:
            return i
    return None


def collapse_sentences(
    results: Sequence[dict], key: str, threshold: float, floor: float
) -> list[str]:
    """One computed sentence per setting: start value, final value, first layer below threshold."""
    out = []
    for r in results:
        vals = r[f"{key}_mean"]
        hit = first_below(vals, threshold)
        end = vals[-1]
        where = (
            f"first falls below {threshold:g} at layer {hit}"
            if hit is not None
            else f"never falls below {threshold:g}"
        )
        tail = " (round-off level)" if end is not None and end < floor else ""
        out.append(
            f"- {r['label']}: {fmt(vals[0])} at the input, {fmt(end)} at layer {len(vals) - 1}"
            f"{tail}; {where}."
        )
    return out


def slowest_and_fastest(results: Sequence[dict], key: str, layer: int) -> str:
    """Sentence naming the settings with the largest and smallest mean residual at ``layer``."""
    vals = [
        (r[f"{key}_mean"][layer], r["label"])
        for r in results
        if r[f"{key}_mean"][layer] is not None
    ]
    if len(vals) < 2:
        return ""
    vals.sort()
    return (
        f"At layer {layer} the largest mean residual is {vals[-1][1]} ({fmt(vals[-1][0])}) and the "
        f"smallest is {vals[0][1]} ({fmt(vals[0][0])})."
    )
