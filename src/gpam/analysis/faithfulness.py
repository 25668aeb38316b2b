"""Lambda sweeps of the rank-collapse measure for daGPAM stacks at initialisation.

(a) ``lam_neg`` varies in the affine form (``lam_pos = 1 + lam_neg``, rows sum to 1);
(b) ``lam_pos`` varies with ``lam_neg`` fixed and ``affine=False`` (rows sum to
``lam_pos - lam_neg``; the relative residuals are scale-free, so a row sum other than 1 only
rescales X and does not by itself change them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from gpam.analysis.rank_collapse import StackConfig, measure_settings
from gpam.analysis.stacks import ARCHITECTURES, VariantSpec, check_spec


@dataclass
class FaithfulnessConfig(StackConfig):
    """``gpam analyze faithfulness`` settings."""

    lam_neg_values: Sequence[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0, 4.0])
    lam_pos_values: Sequence[float] = field(default_factory=lambda: [1.0, 1.5, 2.0, 3.0, 4.0])
    fixed_lam_neg: float = 1.0
    architecture: str = "attention"
    neg_query: str = "linear"
    neg_init: str | None = None

    def sweeps(self) -> list[tuple[str, str, list[VariantSpec]]]:
        """``(name, description, specs)`` of the two sweeps."""
        if not self.lam_neg_values:
            raise ValueError("lam_neg_values must list at least one value")
        if not self.lam_pos_values:
            raise ValueError("lam_pos_values must list at least one value")
        neg = {"neg_query": self.neg_query, "neg_init": self.neg_init}
        a = [VariantSpec("dagpam", lam_neg=float(x), **neg) for x in self.lam_neg_values]
        b = [
            VariantSpec(
                "dagpam", lam_neg=float(self.fixed_lam_neg), lam_pos=float(x), affine=False, **neg
            )
            for x in self.lam_pos_values
        ]
        for s in a + b:
            check_spec(s)
        return [
            ("lam_neg", "(a) lam_neg sweep, affine (lam_pos = 1 + lam_neg)", a),
            (
                "lam_pos",
                f"(b) lam_pos sweep, lam_neg = {self.fixed_lam_neg:g}, affine=False",
                b,
            ),
        ]

    def validate(self) -> None:
        super().validate()
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}"
            )
        self.sweeps()


def faithfulness(cfg: FaithfulnessConfig | None = None, *, show_progress: bool = True) -> dict:
    """Run both sweeps; returns ``{"config": {...}, "sweeps": [{"name", "description",
    "results": [rank-collapse result per lambda setting]}]}``."""
    cfg = cfg or FaithfulnessConfig()
    cfg.validate()
    sweeps = cfg.sweeps()
    specs = [s for _, _, ss in sweeps for s in ss]
    results = measure_settings(
        specs, [cfg.architecture], cfg, desc="lambda sweeps", show_progress=show_progress
    )
    out, i = [], 0
    for name, desc, ss in sweeps:
        out.append({"name": name, "description": desc, "results": results[i : i + len(ss)]})
        i += len(ss)
    config = asdict(cfg)
    config["lam_neg_values"] = [float(x) for x in cfg.lam_neg_values]
    config["lam_pos_values"] = [float(x) for x in cfg.lam_pos_values]
    config["std"] = "sample std over trials (ddof=1); each trial is the mean over its batch"
    return {"config": config, "sweeps": out}
