"""Comparison grids: variants x seeds (x daGPAM lambdas) at an equal budget, resumable.

``run_compare(config, out)`` trains every run of the grid, writes ``results.json`` atomically after
each finished run (a rerun with the same ``out`` skips finished runs whose settings match), then
writes ``report.md`` and the plots (:mod:`gpam.compare.report`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from gpam._io import atomic_write_json
from gpam.compare.measure import count_parameters
from gpam.compare.stats import correlation, paired_difference, summarize
from gpam.compare.trainer import Task, TrainSettings, check_device, train_run

SCHEMA = "gpam.compare/1"
MATCHED = "softmax-matched"
KINDS = ("synthetic", "lm", "nmt")


@dataclass
class CompareConfig:
    """A comparison: the task, the grid and the shared model/training settings.

    ``variants`` are attention names from ``gpam.VARIANTS``; ``lam_negs`` are daGPAM's lambda
    values (one run per value; other variants ignore it); ``match_params`` adds a softmax model
    whose feed-forward width is raised so its parameter count matches daGPAM's (extra heads add
    no parameters in multi-head attention, and a wider ``d_model`` moves in steps far coarser than
    daGPAM's ~1 % overhead at these sizes). ``attention_layers`` defaults to ``"all"`` (every
    layer uses the variant, also for ``cog``, whose paper keeps the first and last layers softmax:
    pass ``"auto"`` for that, which leaves a 2-layer model all-softmax).
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
    train: TrainSettings = field(default_factory=TrainSettings)
    save_models: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the bad field."""
        import gpam.functional as gf

        known = tuple(getattr(gf, "VARIANTS", ("softmax", "dagpam", "diff", "cog", "coda")))
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not self.variants:
            raise ValueError("variants must name at least one attention variant")
        for v in self.variants:
            if v not in known:
                raise ValueError(f"variants: unknown variant {v!r}; expected some of {known}")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants must not repeat, got {self.variants}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct integers, got {self.seeds}")
        if not self.lam_negs or any(not (x >= 0) for x in self.lam_negs):
            raise ValueError(f"lam_negs must be numbers >= 0, got {self.lam_negs}")
        if self.match_params and "dagpam" not in self.variants:
            raise ValueError("match_params needs 'dagpam' among the variants")
        t = self.train
        if t.steps < 1 or t.batch_size < 1 or t.eval_every < 1 or t.eval_batches < 1:
            raise ValueError("steps, batch_size, eval_every and eval_batches must be >= 1")
        if t.time_budget is not None and not t.time_budget > 0:
            raise ValueError(f"time_budget must be > 0 seconds, got {t.time_budget}")
        check_device(t.device)
        if not t.lr > 0:
            raise ValueError(f"lr must be > 0, got {t.lr}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return dataclasses.asdict(self)


@dataclass
class RunSpec:
    """One cell of the grid."""

    label: str
    attention: str
    seed: int
    lam_neg: float | None = None
    d_ff: int | None = None

    @property
    def key(self) -> str:
        """Unique name of the run in ``results.json``."""
        return f"{self.label}/seed={self.seed}"


def _label(variant: str, lam: float, n_lams: int) -> str:
    return f"dagpam(lam={lam:g})" if variant == "dagpam" and n_lams > 1 else variant


def grid(config: CompareConfig, task: Task, matched_ff: int | None = None) -> list[RunSpec]:
    """Every run of ``config`` in a seed-major order (all variants of seed 0 first).

    ``matched_ff``: the matched softmax's feed-forward width when already known.
    """
    specs: list[RunSpec] = []
    if config.match_params and matched_ff is None:
        matched_ff = matched_d_ff(config, task)
    for seed in config.seeds:
        for v in config.variants:
            lams = config.lam_negs if v == "dagpam" else [None]
            for lam in lams:
                label = _label(v, lam, len(config.lam_negs)) if lam is not None else v
                specs.append(RunSpec(label, v, seed, lam, config.d_ff))
        if config.match_params and matched_ff is not None:
            specs.append(RunSpec(MATCHED, "softmax", seed, None, matched_ff))
    return specs


def model_config(config: CompareConfig, task: Task, spec: RunSpec) -> Any:
    """The ``gpam.models.LMConfig`` of one run."""
    from gpam.models.config import LMConfig

    kw: dict[str, Any] = {}
    if spec.lam_neg is not None:
        kw["lam_neg"] = float(spec.lam_neg)
    return LMConfig(
        vocab_size=task.vocab_size,
        d_model=config.d_model,
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        d_ff=spec.d_ff,
        max_len=task.seq_len,
        dropout=config.dropout,
        attention=spec.attention,
        attention_layers=config.attention_layers,
        **kw,
    )


def build_model(config: CompareConfig, task: Task, spec: RunSpec) -> torch.nn.Module:
    """A freshly initialised ``TransformerLM`` for ``spec`` (initialisation seeded by the seed)."""
    from gpam.models.lm import TransformerLM

    torch.manual_seed(spec.seed)
    return TransformerLM(model_config(config, task, spec))


def _n_params(config: CompareConfig, task: Task, spec: RunSpec) -> int:
    return _count_for(json.dumps(model_config(config, task, spec).to_dict(), sort_keys=True))


@functools.lru_cache(maxsize=64)
def _count_for(config_json: str) -> int:
    from gpam.models.config import LMConfig
    from gpam.models.lm import TransformerLM

    # built on CPU: the models compared here are small, and meta-device init is slower
    return count_parameters(TransformerLM(LMConfig.from_dict(json.loads(config_json))))


def matched_d_ff(config: CompareConfig, task: Task) -> int:
    """Feed-forward width that brings a softmax model closest to (not below) daGPAM's size."""
    lam = config.lam_negs[0]
    target = _n_params(config, task, RunSpec("dagpam", "dagpam", 0, lam, config.d_ff))
    base_ff = config.d_ff or 4 * config.d_model
    p0 = _n_params(config, task, RunSpec("s", "softmax", 0, None, base_ff))
    p1 = _n_params(config, task, RunSpec("s", "softmax", 0, None, base_ff + 1))
    per_unit = p1 - p0
    return base_ff + max(0, math.ceil((target - p0) / per_unit))


def _run_hash(config: CompareConfig, task: Task, spec: RunSpec) -> str:
    shared = {
        "kind": config.kind,
        "task": task.describe(),
        "model": model_config(config, task, spec).to_dict(),
        "train": dataclasses.asdict(config.train),
        "seed": spec.seed,
    }
    shared["train"].pop("device", None)
    return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:16]


def load_results(out: Path) -> dict[str, Any]:
    """``results.json`` in ``out``, or an empty results document."""
    path = Path(out) / "results.json"
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("schema") != SCHEMA:
            raise ValueError(f"out: {path} is not a gpam compare results file")
        return data
    return {"schema": SCHEMA, "runs": {}}


def run_compare(
    config: CompareConfig, task: Task, out: str | os.PathLike, progress: bool = True
) -> dict[str, Any]:
    """Train the grid (skipping runs already finished in ``out``), then write the report.

    Returns the results document (also in ``out/results.json``).
    """
    config.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(out)
    results["kind"] = config.kind
    results["task"] = task.describe()
    results["config"] = config.to_dict()
    runs: dict[str, Any] = results.setdefault("runs", {})
    specs = grid(config, task)
    matched_ff = next((s.d_ff for s in specs if s.label == MATCHED), None)
    softmax_params = _n_params(config, task, RunSpec("softmax", "softmax", 0, None, config.d_ff))
    todo = []
    for spec in specs:
        h = _run_hash(config, task, spec)
        done = runs.get(spec.key)
        if done and done.get("status") == "done" and done.get("run_hash") == h:
            continue
        todo.append((spec, h))
    bar = tqdm(todo, desc="compare", unit="run", disable=not progress)
    for spec, h in bar:
        bar.set_postfix_str(spec.key)
        model = build_model(config, task, spec)
        n_params = count_parameters(model)
        outcome = train_run(model, task, config.train, seed=spec.seed)
        record = {
            "label": spec.label,
            "attention": spec.attention,
            "seed": spec.seed,
            "lam_neg": spec.lam_neg,
            "status": "done",
            "run_hash": h,
            "metric": task.metric,
            "params": n_params,
            "overhead_pct": 100.0 * (n_params - softmax_params) / softmax_params,
            "model_config": model_config(config, task, spec).to_dict(),
            **outcome.to_dict(),
        }
        if config.save_models:
            from gpam.models.io import save_pretrained

            save_pretrained(model, out / "models" / spec.key.replace("/", "_"))
        runs[spec.key] = record
        results["summary"] = summarize_runs(runs, config, task, matched_ff)
        atomic_write_json(out / "results.json", results)
    results["summary"] = summarize_runs(runs, config, task, matched_ff)
    atomic_write_json(out / "results.json", results)
    from gpam.compare.report import write_report

    write_report(results, out)
    return results


def curve_mean(run: dict[str, Any]) -> float | None:
    """Mean validation metric over a run's evaluation points (learning speed: the area under
    the learning curve divided by its length); None when the curve holds no metric."""
    vals = [p["val_metric"] for p in run.get("curve", []) if "val_metric" in p]
    return float(np.mean(vals)) if vals else None


def summarize_runs(
    runs: dict[str, Any], config: CompareConfig, task: Task, matched_ff: int | None = None
) -> dict[str, Any]:
    """Per-label statistics, paired differences to softmax, rank collapse vs metric."""
    specs = grid(config, task, matched_ff)
    wanted = {s.key for s in specs}
    chosen = [r for k, r in runs.items() if k in wanted and r.get("status") == "done"]
    labels: list[str] = []
    for s in specs:
        if s.label not in labels:
            labels.append(s.label)
    by_label = {lab: {r["seed"]: r for r in chosen if r["label"] == lab} for lab in labels}
    base = by_label.get("softmax", {})
    rows = []
    for lab in labels:
        rs = by_label[lab]
        if not rs:
            continue
        seeds = sorted(rs)
        vals = [rs[s]["final_metric"] for s in seeds]
        row: dict[str, Any] = {
            "label": lab,
            **{f"metric_{k}": v for k, v in summarize(vals).items()},
            "params": rs[seeds[0]]["params"],
            "overhead_pct": rs[seeds[0]]["overhead_pct"],
            "time_per_step_ms": float(np.median([rs[s]["time_per_step_ms"] for s in seeds])),
            "peak_memory_mb": summarize([rs[s]["peak_memory_mb"] for s in seeds])["mean"],
            "rank_collapse": summarize([rs[s]["rank_collapse"] for s in seeds])["mean"],
        }
        aucs = {s: curve_mean(rs[s]) for s in seeds}
        if all(v is not None for v in aucs.values()):
            auc = summarize([aucs[s] for s in seeds])
            row["curve_mean_mean"], row["curve_mean_std"] = auc["mean"], auc["std"]
        paired = [s for s in seeds if s in base]
        if lab != "softmax" and paired:
            row["vs_softmax"] = paired_difference(
                [rs[s]["final_metric"] for s in paired], [base[s]["final_metric"] for s in paired]
            )
            a = [aucs[s] for s in paired]
            b = [curve_mean(base[s]) for s in paired]
            if all(v is not None for v in a + b):
                row["curve_mean_vs_softmax"] = paired_difference(a, b)
        rows.append(row)
    corr = correlation([r["rank_collapse"] for r in chosen], [r["final_metric"] for r in chosen])
    return {
        "metric": task.metric,
        "higher_is_better": task.metric != "perplexity",
        "n_runs_done": len(chosen),
        "n_runs_planned": len(wanted),
        "variants": rows,
        "rank_collapse_vs_metric": corr,
    }
