"""Rank collapse at initialisation: residual vs depth for attention stacks of each variant."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from gpam.analysis.measures import relative_residual_composite, relative_residual_fro
from gpam.analysis.stacks import (
    ARCHITECTURES,
    VARIANTS,
    VariantSpec,
    build_stack,
    run_stack,
    variant_specs,
)

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def check_architectures(architectures: Sequence[str]) -> None:
    """Raise ValueError unless ``architectures`` is a non-empty list taken from ARCHITECTURES."""
    bad = [a for a in architectures if a not in ARCHITECTURES]
    if bad or not architectures:
        raise ValueError(f"architectures must be taken from {ARCHITECTURES}, got {bad or '[]'}")


@dataclass
class StackConfig:
    """Shape and sampling of the stacks (inputs ``N(0, input_scale^2)``, fresh weights)."""

    depth: int = 12
    length: int = 32
    width: int = 64
    heads: int = 4
    trials: int = 8
    batch: int = 4
    seed: int = 0
    dtype: str = "float64"
    input_scale: float = 1.0

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        for name in ("depth", "length", "width", "heads", "trials", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if not (isinstance(self.input_scale, (int, float)) and self.input_scale > 0):
            raise ValueError(f"input_scale must be a number > 0, got {self.input_scale!r}")


@dataclass
class RankCollapseConfig(StackConfig):
    """``gpam analyze rank-collapse`` settings; daGPAM once per ``lam_neg`` (affine form).

    ``neg_query``/``neg_init``: daGPAM's negative query and its initialisation (passed to
    ``gpam.MultiheadAttention``; ``neg_init=None`` keeps the layer's default).
    """

    variants: Sequence[str] = field(default_factory=lambda: list(VARIANTS))
    lam_neg: Sequence[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    architectures: Sequence[str] = field(
        default_factory=lambda: ["attention", "attention_skip", "preln"]
    )
    neg_query: str = "linear"
    neg_init: str | None = None

    def specs(self) -> list[VariantSpec]:
        """The attention settings to measure, in order."""
        return variant_specs(self.variants, self.lam_neg, [self.neg_query], [self.neg_init])

    def validate(self) -> None:
        super().validate()
        check_architectures(self.architectures)
        self.specs()


def _mean_std(rows: list[list[float]]) -> tuple[list[float | None], list[float | None]]:
    """Per-layer mean and sample std (ddof=1; 0 for one trial) over trials; non-finite -> None."""
    t = torch.tensor(rows, dtype=torch.float64)  # (trials, layers)
    mean = t.mean(0)
    std = t.std(0, correction=1) if t.shape[0] > 1 else torch.zeros_like(mean)
    return [_finite(v) for v in mean.tolist()], [_finite(v) for v in std.tolist()]


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def measure_stack(
    spec: VariantSpec, architecture: str, cfg: StackConfig, progress: tqdm | None = None
) -> dict:
    """Residual per layer (0..depth) of one setting over ``cfg.trials`` seeded trials.

    Trial ``t`` seeds torch with ``cfg.seed + t`` before drawing the weights and a batch of
    ``cfg.batch`` inputs of shape (length, width); each trial's value is its batch mean.
    The same seeds are used for every setting (paired inputs across variants).
    """
    dtype = DTYPES[cfg.dtype]
    fro_rows, comp_rows, seeds = [], [], []
    for t in range(cfg.trials):
        seed = cfg.seed + t
        seeds.append(seed)
        torch.manual_seed(seed)
        x = cfg.input_scale * torch.randn(cfg.batch, cfg.length, cfg.width, dtype=dtype)
        layers = build_stack(spec, architecture, cfg.depth, cfg.width, cfg.heads, dtype=dtype)
        layers.eval()
        states = run_stack(layers, x)
        fro_rows.append([relative_residual_fro(h).mean().item() for h in states])
        comp_rows.append([relative_residual_composite(h).mean().item() for h in states])
        if progress is not None:
            progress.update(1)
    return {
        "variant": spec.variant,
        "label": spec.label(),
        "lam_pos": spec.effective_lam_pos(),
        "lam_neg": spec.lam_neg,
        "affine": spec.affine if spec.variant == "dagpam" else None,
        "architecture": architecture,
        "layers": list(range(cfg.depth + 1)),
        **residual_summary(fro_rows, comp_rows),
        "seeds": seeds,
    }


def residual_summary(fro_rows: list[list[float]], comp_rows: list[list[float]]) -> dict:
    """The ``residual_*`` entries of a result from per-trial, per-layer residuals (Frobenius and
    composite): mean and std over trials, and the trials themselves (non-finite -> None)."""
    fro_mean, fro_std = _mean_std(fro_rows)
    comp_mean, comp_std = _mean_std(comp_rows)
    return {
        "residual_fro_mean": fro_mean,
        "residual_fro_std": fro_std,
        "residual_composite_mean": comp_mean,
        "residual_composite_std": comp_std,
        "residual_fro_trials": [[_finite(v) for v in r] for r in fro_rows],
        "residual_composite_trials": [[_finite(v) for v in r] for r in comp_rows],
    }


def measure_settings(
    specs: Sequence[VariantSpec],
    architectures: Sequence[str],
    cfg: StackConfig,
    *,
    desc: str = "rank collapse",
    show_progress: bool = True,
) -> list[dict]:
    """``measure_stack`` for every (spec, architecture) pair, with one tqdm bar over all trials."""
    total = len(specs) * len(architectures) * cfg.trials
    results = []
    with tqdm(total=total, desc=desc, unit="trial", disable=not show_progress) as bar:
        for arch in architectures:
            for spec in specs:
                results.append(measure_stack(spec, arch, cfg, bar))
    return results


def rank_collapse(cfg: RankCollapseConfig | None = None, *, show_progress: bool = True) -> dict:
    """Run the rank-collapse analysis; returns ``{"config": {...}, "results": [...]}``.

    Each result holds per-layer (0..depth) mean and std over trials of the relative Frobenius
    residual ``||res(X)||_F / ||X||_F`` and of Dong et al.'s relative composite residual
    ``||res(X)||_{1,inf} / ||X||_{1,inf}``, plus the per-trial values and seeds.
    """
    cfg = cfg or RankCollapseConfig()
    cfg.validate()
    results = measure_settings(cfg.specs(), cfg.architectures, cfg, show_progress=show_progress)
    config = asdict(cfg)
    config["variants"] = list(cfg.variants)
    config["lam_neg"] = [float(x) for x in cfg.lam_neg]
    config["architectures"] = list(cfg.architectures)
    config["residual"] = "X - 1 x^T with x the token mean"
    config["residual_composite"] = "sqrt(||res||_1 ||res||_inf) / sqrt(||X||_1 ||X||_inf)"
    config["std"] = "sample std over trials (ddof=1); each trial is the mean over its batch"
    return {"config": config, "results": results}
