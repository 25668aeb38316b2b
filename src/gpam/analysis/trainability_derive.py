"""From per-cell records to the trainability map: means over seeds, the "trains" rule, the
smallest skip weight that trains and paired differences to softmax.

**The rule.** A grid point (setting, depth, qk gain, skip weight) *trains* when every seed
finished with a finite held-out loss and the mean held-out loss over seeds lies below the
corpus's unigram loss by more than both the seeds' spread (sample standard deviation, ddof=1; 0
with one seed) and ``margin`` (default 0.05 nats):
``unigram - mean > max(std, margin)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

CONFIDENCE = 0.95


def trains(losses: Sequence[float | None], unigram: float, margin: float) -> bool:
    """The rule of the module doc for one grid point's per-seed held-out losses."""
    if not losses or any(v is None or not math.isfinite(v) for v in losses):
        return False
    mean, std = _mean_std(losses)  # type: ignore[arg-type]
    return unigram - mean > max(std or 0.0, margin)


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def paired(a: Sequence[float | None], b: Sequence[float | None]) -> dict:
    """``a - b`` paired by seed: ``n``, ``mean``, ``std`` and the Student-t ``ci_low`` /
    ``ci_high`` at 95 % (None where not computable: a missing value, or fewer than 2 pairs)."""
    out: dict = {"n": len(a), "mean": None, "std": None, "ci_low": None, "ci_high": None}
    if len(a) != len(b) or not a or any(v is None for v in (*a, *b)):
        return out
    d = [x - y for x, y in zip(a, b, strict=True)]  # type: ignore[operator]
    mean, std = _mean_std(d)
    out.update(mean=mean, std=std)
    if std is not None:
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(d) - 1)) * std / math.sqrt(len(d))
        out.update(ci_low=mean - half, ci_high=mean + half)
    return out


def _avg(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals and len(vals) == len(values) else None


def _key(fp: dict) -> tuple:
    return (fp["depth"], fp["qk_gain"], fp["skip_weight"])


def summarize(records: Sequence[dict], unigram: float, margin: float) -> list[dict]:
    """One row per (setting, depth, qk gain, skip weight), seeds in ascending order."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["label"], *_key(r["fingerprint"])), []).append(r)
    rows = []
    for (label, depth, gain, a), recs in groups.items():
        recs = sorted(recs, key=lambda r: r["fingerprint"]["seed"])
        losses = [r["val_loss"] for r in recs]
        finite = [v for v in losses if v is not None]
        complete = bool(finite) and len(finite) == len(losses)
        mean, std = _mean_std(finite) if complete else (None, None)
        fp = recs[0]["fingerprint"]
        rows.append(
            {
                "label": label,
                "variant": fp["variant"],
                "lam_neg": fp["lam_neg"],
                "neg_query": fp["neg_query"],
                "depth": depth,
                "qk_gain": gain,
                "skip_weight": a,
                "seeds": [r["fingerprint"]["seed"] for r in recs],
                "val_loss": losses,
                "val_loss_mean": mean,
                "val_loss_std": std,
                "rel_unigram": None if mean is None else mean / unigram,
                "trains": trains(losses, unigram, margin),
                "diverged": sum(r["stopped"] == "diverged" for r in recs),
                "q_grad_first": _avg([r["q_grad"]["first"] for r in recs]),
                "q_grad_last": _avg([r["q_grad"]["last"] for r in recs]),
                "q_grad_min": _avg([r["q_grad"]["min"] for r in recs]),
                "q_grad_max": _avg([r["q_grad"]["max"] for r in recs]),
                "residual_stack_init": _avg([r["init"]["residual_stack"][-1] for r in recs]),
                "residual_stack_final": _avg([r["final"]["residual_stack"][-1] for r in recs]),
                "residual_model_init": _avg([r["init"]["residual_model"][-1] for r in recs]),
                "residual_model_final": _avg([r["final"]["residual_model"][-1] for r in recs]),
                "jacobian_rel_init": _avg([r["init"]["jacobian_rel_mean"] for r in recs]),
                "jacobian_rel_final": _avg([r["final"]["jacobian_rel_mean"] for r in recs]),
            }
        )
    _relative(rows)
    return rows


def _relative(rows: list[dict]) -> None:
    """Add ``rel_skip1`` (mean loss over the same setting's at skip weight 1) and
    ``vs_softmax`` (paired difference of held-out losses to softmax's, same grid point)."""
    index = {(r["label"], r["depth"], r["qk_gain"], r["skip_weight"]): r for r in rows}
    for r in rows:
        ref = index.get((r["label"], r["depth"], r["qk_gain"], 1.0))
        ok = ref is not None and r["val_loss_mean"] is not None and ref["val_loss_mean"]
        r["rel_skip1"] = r["val_loss_mean"] / ref["val_loss_mean"] if ok else None
        soft = index.get(("softmax", r["depth"], r["qk_gain"], r["skip_weight"]))
        same_seeds = soft is not None and soft["seeds"] == r["seeds"]
        r["vs_softmax"] = paired(r["val_loss"], soft["val_loss"]) if same_seeds else None


def smallest_skip(rows: Sequence[dict]) -> list[dict]:
    """Per setting, depth and qk gain: the smallest skip weight whose grid point trains (None if
    none), with softmax's at the same depth and gain and the paired loss difference there."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["label"], r["depth"], r["qk_gain"]), []).append(r)
    soft = {(d, g): v for (lab, d, g), v in groups.items() if lab == "softmax"}
    out = []
    for (label, depth, gain), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["skip_weight"])
        first = next((r for r in rs if r["trains"]), None)
        s_rows = soft.get((depth, gain))
        s_first = next((r for r in s_rows if r["trains"]), None) if s_rows else None
        out.append(
            {
                "label": label,
                "variant": rs[0]["variant"],
                "depth": depth,
                "qk_gain": gain,
                "smallest_skip_weight": None if first is None else first["skip_weight"],
                "softmax_smallest_skip_weight": None if s_first is None else s_first["skip_weight"],
                "vs_softmax_there": None if first is None else first["vs_softmax"],
                "trains_at": [r["skip_weight"] for r in rs if r["trains"]],
            }
        )
    return out
