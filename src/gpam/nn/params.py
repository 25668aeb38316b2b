"""Parameter counts and the overhead of gpam attention over the same model with softmax."""

from __future__ import annotations

from torch import nn


def parameter_report(model: nn.Module) -> dict[str, float | int]:
    """Count ``model``'s parameters and those its gpam attention layers add over softmax.

    Returns ``{"total", "extra", "softmax_equivalent", "overhead_pct"}``; ``extra`` sums
    ``extra_parameters()`` of every ``gpam.MultiheadAttention`` inside ``model`` (tied
    parameters counted once).
    """
    total = sum(p.numel() for p in model.parameters())
    extra = sum(
        m.extra_parameters()
        for m in model.modules()
        if callable(getattr(m, "extra_parameters", None))
    )
    base = total - extra
    return {
        "total": total,
        "extra": extra,
        "softmax_equivalent": base,
        "overhead_pct": 100.0 * extra / base if base else 0.0,
    }
