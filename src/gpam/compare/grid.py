"""What a comparison runs: :class:`CompareConfig` (task, grid, shared model and training
settings) and its cells (:class:`RunSpec`, :func:`grid`). No training happens here.

A variant entry is ``VARIANT`` or ``[LABEL=]VARIANT[+KEY=VALUE...]``: ``KEY`` is any field of the
model config (``gpam.models.LMConfig`` / ``Seq2SeqConfig``) and ``VALUE`` is JSON or a string, so
one grid can hold several named settings of one variant, e.g.
``dagpam-fixed=dagpam+lam_neg=0.5``, ``dagpam-head=dagpam+lambda_mode=head``,
``dagpam-token=dagpam+lambda_mode=token``. ``dagpam_options`` apply to every daGPAM run whose entry
does not set them itself.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from gpam.compare.settings import TrainSettings

SCHEMA = "gpam.compare/2"
MATCHED = "softmax-matched"
# built-in baseline: softmax with twice the heads at the same width (same parameters, 2x maps)
SOFTMAX_2H = "softmax-2h"
KINDS = ("synthetic", "lm", "nmt")


def _variants() -> tuple[str, ...]:
    import gpam

    return tuple(gpam.VARIANTS)


def parse_variant(entry: str) -> tuple[str, str, dict[str, Any]]:
    """``(label, variant, model options)`` of one ``variants`` entry (see the module docstring)."""
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError(f"variants: expected a variant name, got {entry!r}")
    text = entry.strip()
    label = None
    head, *opts = text.split("+")
    if "=" in head:
        label, head = (t.strip() for t in head.split("=", 1))
    options: dict[str, Any] = {}
    for o in opts:
        if "=" not in o:
            raise ValueError(f"variants: {entry!r}: expected +KEY=VALUE, got +{o}")
        k, v = (t.strip() for t in o.split("=", 1))
        try:
            options[k] = json.loads(v)
        except json.JSONDecodeError:
            options[k] = v
    if head == SOFTMAX_2H:
        return label or text, "softmax", options
    if head not in _variants():
        raise ValueError(f"variants: unknown variant {head!r}; expected some of {_variants()}")
    return label or text, head, options


@dataclass
class CompareConfig:
    """A comparison: the task, the grid and the shared model/training settings.

    ``variants`` are entries as in the module docstring; ``lam_negs`` are daGPAM's lambda values
    (one run per value for every daGPAM entry that does not fix ``lam_neg``); ``match_params``
    adds softmax models whose feed-forward width is raised so their parameter count matches
    each distinct count above softmax's among the settings
    (:func:`gpam.compare.runner.matched_d_ffs`; extra heads add no parameters in multi-head
    attention, and a wider ``d_model`` moves in steps far coarser than daGPAM's ~1 % overhead
    at these sizes). The entry ``softmax-2h`` is softmax with ``2 n_heads`` heads.
    ``attention_layers`` defaults to ``"all"`` (every layer uses the variant, also for ``cog``,
    whose paper keeps the first and last layers softmax: pass ``"auto"`` for that).
    """

    kind: str = "synthetic"
    task: str = "recall"
    task_options: dict[str, Any] = field(default_factory=dict)
    variants: list[str] = field(default_factory=lambda: ["softmax", "dagpam", "diff", "cog"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    lam_negs: list[float] = field(default_factory=lambda: [0.5])
    match_params: bool = False
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int | None = None
    dropout: float = 0.0
    attention_layers: str | list[int] = "all"
    dagpam_options: dict[str, Any] = field(default_factory=dict)
    train: TrainSettings = field(default_factory=TrainSettings)
    save_models: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the bad field."""
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not self.variants:
            raise ValueError("variants must name at least one attention variant")
        parsed = [parse_variant(v) for v in self.variants]
        labels = [p[0] for p in parsed]
        if len(set(labels)) != len(labels):
            raise ValueError(f"variants must not repeat, got {self.variants}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct integers, got {self.seeds}")
        if not self.lam_negs or any(not (x >= 0) for x in self.lam_negs):
            raise ValueError(f"lam_negs must be numbers >= 0, got {self.lam_negs}")
        if self.match_params and all(p[1] == "softmax" for p in parsed):
            raise ValueError("match_params needs a variant other than softmax among the variants")
        self.train.validate()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return dataclasses.asdict(self)


@dataclass
class RunSpec:
    """One cell of the grid: a label, the variant, the seed and the model options."""

    label: str
    attention: str
    seed: int
    lam_neg: float | None = None
    d_ff: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None  # the run's own peak learning rate (None: the grid's ``train.lr``)

    @property
    def key(self) -> str:
        """Unique name of the run in ``results.json``."""
        return f"{self.label}/seed={self.seed}"

    @property
    def folder(self) -> str:
        """The run's folder name (``key`` without path separators)."""
        return self.key.replace("/", "_")

    def model_options(self) -> dict[str, Any]:
        """Model-config fields this run sets (options, lambda, feed-forward width)."""
        kw = dict(self.options)
        if self.lam_neg is not None:
            kw["lam_neg"] = float(self.lam_neg)
        if self.d_ff is not None:
            kw["d_ff"] = self.d_ff
        return kw


def _is_2h(entry: str) -> bool:
    """Whether a ``variants`` entry names the built-in ``softmax-2h`` baseline."""
    head = entry.strip().split("+")[0]
    return head.split("=", 1)[-1].strip() == SOFTMAX_2H


def grid(
    config: CompareConfig,
    matched_ff: int | dict[str, int] | None = None,
    lrs: dict[str, float] | None = None,
) -> list[RunSpec]:
    """Every run of ``config`` in a seed-major order (all variants of seed 0 first);
    ``matched_ff``: the matched softmaxes' feed-forward widths, ``{label: d_ff}`` (an int means
    ``{MATCHED: d_ff}``; needed when ``match_params``); ``lrs``: a learning rate per label for the
    labels that have their own (the others train at ``config.train.lr``)."""
    specs = _grid(config, {MATCHED: matched_ff} if isinstance(matched_ff, int) else matched_ff)
    for s in specs:
        if lrs and s.label in lrs:
            s.lr = float(lrs[s.label])
    return specs


def _grid(config: CompareConfig, matched: dict[str, int] | None) -> list[RunSpec]:
    specs: list[RunSpec] = []
    several = len(config.lam_negs) > 1
    for seed in config.seeds:
        for entry in config.variants:
            label, variant, options = parse_variant(entry)
            if _is_2h(entry):
                options = {"n_heads": 2 * config.n_heads, **options}
            if variant == "dagpam":
                options = {**config.dagpam_options, **options}
            if variant != "dagpam" or "lam_neg" in options:
                specs.append(RunSpec(label, variant, seed, None, config.d_ff, options))
                continue
            for lam in config.lam_negs:
                lab = f"{label}(lam={lam:g})" if several else label
                specs.append(RunSpec(lab, variant, seed, lam, config.d_ff, options))
        if config.match_params and matched:
            for lab, ff in matched.items():
                specs.append(RunSpec(lab, "softmax", seed, None, ff))
    return specs


def first_dagpam(config: CompareConfig) -> RunSpec:
    """The daGPAM run the matched softmax is sized against (its first lambda)."""
    return next(s for s in grid(config) if s.attention == "dagpam")
