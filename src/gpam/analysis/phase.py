"""The paper's dilemma, measured: rank collapse against a saturating map across the logit scale.

For each setting (variant x lambda x negative query x its initialisation), architecture and cell
(``qk_gain`` x ``vo_gain``), freshly initialised ``gpam.MultiheadAttention`` stacks are built
(trial ``t`` seeds torch with ``seed + t``, draws the inputs, then the weights, exactly as
``gpam analyze rank-collapse`` does), then W_Q, W_K (and a separate negative-query projection)
are multiplied by ``qk_gain`` and W_V, W_O by ``vo_gain`` (weights only; biases as initialised).
Per layer over trials: the relative Frobenius residual, the logit-Jacobian norm relative to a
uniform row (:mod:`gpam.analysis.phase_maps`) and Lemma 1's region quantity. Derived per setting:
the critical gain, the smallest ``qk_gain`` whose final residual is >= ``threshold``
(log-interpolated), and the Jacobian and region quantity there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from gpam.analysis.measures import relative_residual_fro
from gpam.analysis.phase_maps import JACOBIAN_NOTES, jacobian_rel, region_quantity
from gpam.analysis.rank_collapse import (
    DTYPES,
    StackConfig,
    _finite,
    _mean_std,
    check_architectures,
)
from gpam.analysis.stacks import VariantSpec, build_stack, variant_specs


def default_qk_gains() -> list[float]:
    """The default log grid ``2^(k/2)`` from 0.5 to 16 (11 gains)."""
    return [round(2.0 ** (k / 2), 4) for k in range(-2, 9)]


def default_variants() -> list[str]:
    """Every variant in ``gpam.VARIANTS`` (whatever the installed library has)."""
    from gpam.functional import VARIANTS

    return list(VARIANTS)


def default_neg_queries() -> list[str]:
    """``linear``, ``negate`` and ``relu_linear`` (those the installed layer supports)."""
    from gpam.nn.multihead import NEG_QUERIES

    return [q for q in ("linear", "negate", "relu_linear") if q in NEG_QUERIES]


@dataclass
class PhaseConfig(StackConfig):
    """``gpam analyze phase`` settings (stack shape from :class:`StackConfig`).

    ``neg_init`` entries may be ``None`` (the layer's default initialisation).
    """

    trials: int = 3
    batch: int = 2
    variants: Sequence[str] = field(default_factory=default_variants)
    lam_neg: Sequence[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    neg_query: Sequence[str] = field(default_factory=default_neg_queries)
    neg_init: Sequence[str | None] = field(default_factory=lambda: [None])
    architectures: Sequence[str] = field(default_factory=lambda: ["attention_norm"])
    qk_gains: Sequence[float] = field(default_factory=default_qk_gains)
    vo_gains: Sequence[float] = field(default_factory=lambda: [1.0])
    threshold: float = 0.5
    gamma: float = 1.0

    def specs(self) -> list[VariantSpec]:
        """The settings in order: daGPAM once per ``lam_neg`` x ``neg_query`` x ``neg_init``."""
        return variant_specs(self.variants, self.lam_neg, self.neg_query, self.neg_init)

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        super().validate()
        check_architectures(self.architectures)
        for name in ("qk_gains", "vo_gains"):
            gains = list(getattr(self, name))
            if not gains or not all(isinstance(g, (int, float)) and g > 0 for g in gains):
                raise ValueError(f"{name} must list numbers > 0, got {gains!r}")
            if any(b <= a for a, b in zip(gains, gains[1:], strict=False)):
                raise ValueError(f"{name} must be strictly increasing, got {gains!r}")
        if not (isinstance(self.threshold, (int, float)) and 0 < self.threshold < 1):
            raise ValueError(f"threshold must be a number in (0, 1), got {self.threshold!r}")
        if not (isinstance(self.gamma, (int, float)) and self.gamma > 0):
            raise ValueError(f"gamma must be a number > 0, got {self.gamma!r}")
        self.specs()


QK_PROJECTIONS = ("q_proj", "k_proj", "q_neg_proj")
VO_PROJECTIONS = ("v_proj", "out_proj")


def gain_weights(layers: nn.Module) -> list[tuple[Tensor, Tensor, str]]:
    """``(weight, original copy, "qk" | "vo")`` for every gained projection of the attention
    layers in ``layers``: W_Q, W_K and a separate W_Q_neg (qk); W_V, W_O (vo)."""
    from gpam.nn import MultiheadAttention

    out = []
    for mha in layers.modules():
        if not isinstance(mha, MultiheadAttention):
            continue
        for names, kind in ((QK_PROJECTIONS, "qk"), (VO_PROJECTIONS, "vo")):
            for name in names:
                proj = getattr(mha, name, None)
                if proj is not None:
                    out.append((proj.weight, proj.weight.detach().clone(), kind))
    return out


@torch.no_grad()
def set_gains(weights: list[tuple[Tensor, Tensor, str]], qk_gain: float, vo_gain: float) -> None:
    """Set every weight from :func:`gain_weights` to its original times its gain (in place)."""
    for w, orig, kind in weights:
        w.copy_(orig * (qk_gain if kind == "qk" else vo_gain))


@torch.no_grad()
def scale_gains(layers: nn.Module, qk_gain: float, vo_gain: float) -> None:
    """Multiply every attention layer's W_Q, W_K, separate W_Q_neg by ``qk_gain`` and W_V, W_O
    by ``vo_gain`` in place (weights only)."""
    set_gains(gain_weights(layers), qk_gain, vo_gain)


def _mean(t: Tensor | None) -> float | None:
    return None if t is None else _finite(float(t.mean()))


@torch.no_grad()
def run_phase_stack(
    layers: nn.ModuleList, x: Tensor, gamma: float = 1.0
) -> tuple[list[float], list[float | None], list[float | None]]:
    """One stack on x (B, n, d): residual per layer 0..depth, Jacobian and region quantity
    (largest over heads) per layer 1..depth."""
    res = [float(relative_residual_fro(x).mean())]
    jac: list[float | None] = []
    region: list[float | None] = []
    for block in layers:
        y = block.attention_input(x)
        jac.append(_mean(jacobian_rel(block.attn, y)))
        q = region_quantity(block.attn, gamma)
        region.append(None if q is None else _finite(float(q.max())))
        x = block(x)
        res.append(float(relative_residual_fro(x).mean()))
    return res, jac, region


def _nanmean(rows: list[list[float | None]]) -> list[float | None]:
    """Per-layer mean over trials; None where any trial has None."""
    out = []
    for col in zip(*rows, strict=True):
        out.append(None if any(v is None for v in col) else _finite(sum(col) / len(col)))
    return out


def _layer_mean(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]


def measure_setting(
    spec: VariantSpec, architecture: str, cfg: PhaseConfig, bar: tqdm | None = None
) -> list[dict]:
    """Every (vo_gain, qk_gain) cell of one setting; the same seeded weights and inputs per trial
    are scaled for every cell (paired across gains)."""
    dtype = DTYPES[cfg.dtype]
    cells = [(vo, qk) for vo in cfg.vo_gains for qk in cfg.qk_gains]
    acc: dict[tuple, dict[str, list]] = {c: {"res": [], "jac": [], "reg": []} for c in cells}
    neg_init = None
    for t in range(cfg.trials):
        torch.manual_seed(cfg.seed + t)
        x = cfg.input_scale * torch.randn(cfg.batch, cfg.length, cfg.width, dtype=dtype)
        layers = build_stack(spec, architecture, cfg.depth, cfg.width, cfg.heads, dtype=dtype)
        layers.eval()
        neg_init = getattr(layers[0].attn, "neg_init", None)
        weights = gain_weights(layers)
        for vo, qk in cells:
            set_gains(weights, qk, vo)
            res, jac, reg = run_phase_stack(layers, x, cfg.gamma)
            acc[(vo, qk)]["res"].append(res)
            acc[(vo, qk)]["jac"].append(jac)
            acc[(vo, qk)]["reg"].append(reg)
            if bar is not None:
                bar.update(1)
    dagpam = spec.variant == "dagpam"
    out = []
    for vo, qk in cells:
        a = acc[(vo, qk)]
        res_mean, res_std = _mean_std(a["res"])
        region_layers = _nanmean(a["reg"])
        out.append(
            {
                "variant": spec.variant,
                "label": spec.label(),
                "lam_pos": spec.effective_lam_pos(),
                "lam_neg": spec.lam_neg,
                "neg_query": spec.neg_query if dagpam else None,
                "neg_init": (neg_init or spec.neg_init or "orthogonal") if dagpam else None,
                "architecture": architecture,
                "qk_gain": float(qk),
                "vo_gain": float(vo),
                "residual_fro_mean": res_mean,
                "residual_fro_std": res_std,
                "jacobian_rel_mean": _nanmean(a["jac"]),
                "region_quantity": _layer_mean(region_layers),
                "region_quantity_per_layer": region_layers,
            }
        )
    return out


def critical_point(
    gains: Sequence[float], finals: Sequence[float | None], threshold: float = 0.5
) -> tuple[float | None, int | None, float]:
    """Smallest gain whose value is >= ``threshold``, interpolated linearly in ``log(gain)``.

    Returns ``(gain, i, t)``: the crossing lies between ``gains[i-1]`` and ``gains[i]`` at
    fraction ``t`` (``i == 0``, ``t == 1``: already at the first gain); ``(None, None, 0)`` if no
    gain reaches the threshold. None values count as not reaching it.
    """
    for i, v in enumerate(finals):
        if v is None or v < threshold:
            continue
        if i == 0:
            return float(gains[0]), 0, 1.0
        prev = finals[i - 1]
        prev = 0.0 if prev is None else prev
        t = (threshold - prev) / (v - prev) if v > prev else 1.0
        lg = math.log(gains[i - 1]) + t * (math.log(gains[i]) - math.log(gains[i - 1]))
        return math.exp(lg), i, t
    return None, None, 0.0


def _interp(a: float | None, b: float | None, t: float, log: bool = False) -> float | None:
    if a is None or b is None:
        return None
    if log and a > 0 and b > 0:
        return math.exp(math.log(a) + t * (math.log(b) - math.log(a)))
    return a + t * (b - a)


def critical_table(results: Sequence[dict], threshold: float = 0.5) -> list[dict]:
    """Per setting, architecture and vo gain: the critical qk gain and the layer-mean Jacobian
    and region quantity there (interpolated at the same fraction; the region quantity, which
    scales as ``qk_gain^2``, log-linearly)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        key = (r["label"], r["architecture"], r["vo_gain"])
        groups.setdefault(key, []).append(r)
    out = []
    for rows in groups.values():
        rows = sorted(rows, key=lambda r: r["qk_gain"])
        gains = [r["qk_gain"] for r in rows]
        finals = [r["residual_fro_mean"][-1] for r in rows]
        jacs = [_layer_mean(r["jacobian_rel_mean"]) for r in rows]
        regs = [r["region_quantity"] for r in rows]
        g, i, t = critical_point(gains, finals, threshold)
        jac = reg = None
        if i is not None:
            lo = max(i - 1, 0)
            jac = _interp(jacs[lo], jacs[i], t)
            reg = _interp(regs[lo], regs[i], t, log=True)
        r0 = rows[0]
        out.append(
            {
                "variant": r0["variant"],
                "label": r0["label"],
                "lam_neg": r0["lam_neg"],
                "neg_query": r0["neg_query"],
                "neg_init": r0["neg_init"],
                "architecture": r0["architecture"],
                "vo_gain": r0["vo_gain"],
                "critical_gain": g,
                "jacobian_rel_at_critical": jac,
                "region_quantity_at_critical": reg,
                "at_first_gain": i == 0,
                "max_final_residual": max((v for v in finals if v is not None), default=None),
                "jacobian_rel_at_max_gain": jacs[-1],
                "final_residual_at_max_gain": finals[-1],
            }
        )
    return out


def phase(cfg: PhaseConfig | None = None, *, show_progress: bool = True) -> dict:
    """Run the phase analysis; returns ``{"config", "results", "critical"}`` (see module doc)."""
    cfg = cfg or PhaseConfig()
    cfg.validate()
    specs = cfg.specs()
    total = len(specs) * len(cfg.architectures) * cfg.trials * len(cfg.qk_gains) * len(cfg.vo_gains)
    results: list[dict] = []
    with tqdm(total=total, desc="phase", unit="stack", disable=not show_progress) as bar:
        for arch in cfg.architectures:
            for spec in specs:
                results.extend(measure_setting(spec, arch, cfg, bar))
    config = asdict(cfg)
    for name in ("variants", "lam_neg", "neg_query", "neg_init", "architectures"):
        config[name] = list(getattr(cfg, name))
    config["qk_gains"] = [float(g) for g in cfg.qk_gains]
    config["vo_gains"] = [float(g) for g in cfg.vo_gains]
    config["notes"] = {
        "residual_fro": "||X - 1 x^T||_F / ||X||_F per layer 0..depth (0 = input), "
        "batch mean per trial; mean and sample std (ddof=1) over trials",
        "jacobian_rel": "per layer 1..depth: ||d map row / d logits row||_F relative to a "
        "uniform softmax row (sqrt(n-1)/n), mean over batch, heads and rows, then over "
        "trials; null where the variant has no logit Jacobian",
        "jacobian_method": JACOBIAN_NOTES,
        "region_quantity": "Lemma 1: 4 sqrt(2) gamma ||W_QK^h||_1 ||W_V^h W_O^h||_{1,inf} / "
        "sqrt(d_qk), largest over heads, mean over layers and trials; gamma = 1 is an "
        "assumption; < 1 means inside the rank-collapse region; W_QK of the positive query "
        "for daGPAM",
        "critical_gain": f"smallest qk_gain whose final residual is >= {cfg.threshold:g}, "
        "log-interpolated; null if none in the grid",
        "gains": "qk_gain multiplies W_Q, W_K and a separate negative-query projection; "
        "vo_gain multiplies W_V and W_O; biases are not scaled",
    }
    return {
        "config": config,
        "results": results,
        "critical": critical_table(results, cfg.threshold),
    }
