"""Comparison grids: variants x seeds (x daGPAM lambdas) at an equal budget, through the one
training engine (:func:`gpam.train.train_loop`), resumable.

``run_compare(config, task, out)`` (synthetic tasks, text corpora) and
``gpam.compare.nmt.run_compare_nmt`` (translation) build each run's model and engine task,
train it in ``out/runs/<label>_seed=<n>/`` (checkpoints every ``eval_every`` steps: a killed
comparison continues each run from its last checkpoint), write ``results.json`` atomically after
each finished run, then ``report.md`` and the plots (:mod:`gpam.compare.report`). A finished run
is reused only while its run hash (task data, model config, training settings, seed) matches;
a run whose settings changed is trained again from scratch.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from gpam._io import atomic_write_json
from gpam.compare import flops, measure
from gpam.compare.grid import (
    KINDS,
    MATCHED,
    SCHEMA,
    CompareConfig,
    RunSpec,
    first_dagpam,
    grid,
    parse_variant,
)
from gpam.compare.kinds import Kind, as_kind
from gpam.compare.settings import TrainSettings, check_device
from gpam.compare.stats import correlation, interpolate_at, paired_difference, summarize

__all__ = [
    "KINDS",
    "MATCHED",
    "SCHEMA",
    "CompareConfig",
    "RunSpec",
    "TrainSettings",
    "check_device",
    "curve_mean",
    "curve_quantity",
    "grid",
    "load_results",
    "matched_d_ff",
    "matched_d_ffs",
    "parse_variant",
    "run_compare",
    "run_grid",
    "run_time",
    "summarize_runs",
    "train_one",
    "value_at",
]


def _n_params(kind: Kind, config: CompareConfig, spec: RunSpec) -> int:
    mc = kind.model_config(config, spec)
    return _count_for(type(mc).__name__, json.dumps(mc.to_dict(), sort_keys=True))


@functools.lru_cache(maxsize=64)
def _count_for(config_type: str, config_json: str) -> int:
    from gpam.models import LMConfig, Seq2SeqConfig, Seq2SeqTransformer, TransformerLM

    cfg_cls, model_cls = {
        "LMConfig": (LMConfig, TransformerLM),
        "Seq2SeqConfig": (Seq2SeqConfig, Seq2SeqTransformer),
    }[config_type]
    # built on CPU: the models compared here are small, and meta-device init is slower
    return measure.count_parameters(model_cls(cfg_cls.from_dict(json.loads(config_json))))


def matched_d_ff(config: CompareConfig, kind: Kind) -> int:
    """Feed-forward width that brings a softmax model closest to (not below) daGPAM's size."""
    target = _n_params(kind, config, first_dagpam(config))
    base_ff = config.d_ff or 4 * config.d_model
    p0 = _n_params(kind, config, RunSpec("s", "softmax", 0, None, base_ff))
    p1 = _n_params(kind, config, RunSpec("s", "softmax", 0, None, base_ff + 1))
    return base_ff + max(0, math.ceil((target - p0) / (p1 - p0)))


def matched_d_ffs(config: CompareConfig, kind: Kind) -> dict[str, int]:
    """The matched softmaxes of ``--match-params``: ``{label: d_ff}``, one per distinct
    parameter count above softmax's among the grid's settings (their first seed), each the
    smallest feed-forward width that brings softmax to at least that count. The label is
    ``softmax-matched`` when there is one such count, else ``softmax-matched-<setting>`` after
    the first setting with that count. ValueError when no setting adds parameters."""
    base_ff = config.d_ff or 4 * config.d_model
    p0 = _n_params(kind, config, RunSpec("s", "softmax", 0, None, base_ff))
    p1 = _n_params(kind, config, RunSpec("s", "softmax", 0, None, base_ff + 1))
    first_seed = config.seeds[0]
    counts: dict[int, str] = {}
    for spec in grid(config):
        if spec.seed != first_seed:
            continue
        n = _n_params(kind, config, spec)
        if n > p0 and n not in counts:
            counts[n] = spec.label
    if not counts:
        raise ValueError("match_params: no setting in the grid has more parameters than softmax")
    ffs = {n: base_ff + math.ceil((n - p0) / (p1 - p0)) for n in counts}
    if len(counts) == 1:
        return {MATCHED: next(iter(ffs.values()))}
    return {f"{MATCHED}-{lab}": ffs[n] for n, lab in counts.items()}


#: how a run's model is initialised (part of the run hash: runs of another init are retrained)
INIT_SCHEME = "paired_init_/1"


def run_hash(config: CompareConfig, kind: Kind, spec: RunSpec) -> str:
    """What a finished run depends on: task data, model config, training settings, seed, and
    the initialisation scheme (:data:`INIT_SCHEME`)."""
    train = dataclasses.asdict(config.train)
    train.pop("device", None)
    if spec.lr is not None:  # a run at its own rate hashes as a grid at that rate
        train["lr"] = float(spec.lr)
    shared = {
        "engine": "gpam.train.train_loop/3",  # 3: fused AdamW, device-side totals
        "init": INIT_SCHEME,
        "kind": config.kind,
        "task": kind.describe(),
        "model": kind.model_config(config, spec).to_dict(),
        "train": train,
        "seed": spec.seed,
    }
    return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:16]


def load_results(out: Path) -> dict[str, Any]:
    """``results.json`` in ``out``, or an empty results document (an older schema's runs are
    dropped: they were trained by another engine)."""
    path = Path(out) / "results.json"
    if path.is_file():
        data = json.loads(path.read_text())
        if not str(data.get("schema", "")).startswith("gpam.compare/"):
            raise ValueError(f"out: {path} is not a gpam compare results file")
        if data["schema"] == SCHEMA:
            return data
    return {"schema": SCHEMA, "runs": {}}


def _prepare_run_dir(run_dir: Path, h: str) -> bool:
    """Make ``run_dir`` hold this run (hash ``h``); True when a checkpoint to resume is there."""
    from gpam.train.checkpoint import latest_checkpoint

    marker = run_dir / "run.json"
    if run_dir.exists():
        same = marker.is_file() and json.loads(marker.read_text()).get("run_hash") == h
        if same and latest_checkpoint(run_dir / "checkpoints") is not None:
            return True
        shutil.rmtree(run_dir)  # another setting, or nothing to resume: start again
    run_dir.mkdir(parents=True)
    atomic_write_json(marker, {"run_hash": h})
    return False


def train_one(
    config: CompareConfig, kind: Kind, spec: RunSpec, run_dir: Path, h: str
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train (or finish) one run with the engine; returns the model and its measurements."""
    from gpam.models.paired import paired_init_
    from gpam.train.distributed import DistInfo
    from gpam.train.loop import train_loop

    dev = check_device(config.train.device)
    resume = _prepare_run_dir(run_dir, h)
    mc = kind.model_config(config, spec)
    torch.manual_seed(spec.seed)
    # paired initialisation: every parameter two settings share starts bit-identical
    model = paired_init_(kind.build(mc), spec.seed).to(dev)
    task = kind.engine_task(config, spec.seed, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        act, memory_method = 0, "cuda max_memory_allocated"
    else:
        first, _ = task.batch({})
        act = measure.activation_bytes(model, lambda m, b: task.loss(m, b)[0], first)
        memory_method = "cpu estimate: params+grads+AdamW state+saved activations of one step"
    shapes = flops.BatchShapes(task)  # the batches trained on: the run's FLOPs
    cpu0 = time.process_time()
    res = train_loop(
        model,
        shapes,
        kind.tokenizer,
        _train_config(config, spec),
        run_dir,
        DistInfo(),
        dev,
        resume=resume,
        quiet=True,
    )
    cpu_s = time.process_time() - cpu0
    peak = (
        torch.cuda.max_memory_allocated(dev)
        if dev.type == "cuda"
        else measure.state_bytes(model) + act
    )
    metric_key = f"val_{kind.metric}"
    curve = [
        {
            "step": r["step"],
            "elapsed_s": r.get("elapsed", math.nan),
            "train_loss": r.get("loss", math.nan),
            "val_loss": r["val_loss"],
            **({"val_metric": r[metric_key]} if metric_key in r else {}),
        }
        for r in res["history"]
        if "val_loss" in r
    ]
    return model, {
        "final_metric": kind.final_metric(model, res, dev),
        # a kind with a test split (gpam.compare.test_split) scores final_metric there
        **(
            {"val_final_metric": kind.val_final_metric(model, res, dev)}
            if hasattr(kind, "val_final_metric")
            else {}
        ),
        "final_loss": res["final_val_loss"],
        "steps": res["steps"],
        "stopped": res["stopped"],
        "wall_s": res["wall_s"],
        "train_s": res["elapsed_s"],
        "budget_clock": res["budget_clock"],
        "time_per_step_ms": res["step_time_ms"],
        "train_flops": flops.training_flops(mc.to_dict(), shapes.shapes, res["steps"]),
        "cpu_s": cpu_s,
        "compile_s": res.get("compile_s"),
        "peak_memory_mb": peak / 2**20,
        "memory_method": memory_method,
        "rank_collapse": kind.rank_collapse(model, task),
        "curve": curve,
    }


def _train_config(config: CompareConfig, spec: RunSpec) -> Any:
    """The engine's settings of one run: the grid's, at the run's own learning rate if any."""
    tc = config.train.train_config(spec.seed)
    return tc if spec.lr is None else dataclasses.replace(tc, lr=float(spec.lr))


def run_compare(
    config: CompareConfig, task: Any, out: str | os.PathLike, progress: bool = True
) -> dict[str, Any]:
    """Train the grid on ``task`` (a synthetic task or a :class:`gpam.data.lm.LMCorpus`),
    skipping runs already finished in ``out`` with the same settings, then write the report.

    Returns the results document (also in ``out/results.json``).
    """
    return run_grid(config, as_kind(task), out, progress)


def run_grid(
    config: CompareConfig,
    kind: Kind,
    out: str | os.PathLike,
    progress: bool = True,
    lrs: dict[str, float] | None = None,
) -> dict[str, Any]:
    """:func:`run_compare` for any :class:`gpam.compare.kinds.Kind`; ``lrs``: a learning rate
    per label (:func:`gpam.compare.grid.grid`)."""
    config.validate()
    out = Path(out)
    results = load_results(out)
    results.update(kind=config.kind, task=kind.describe(), config=config.to_dict())
    runs: dict[str, Any] = results.setdefault("runs", {})
    matched_ff = matched_d_ffs(config, kind) if config.match_params else None
    specs = grid(config, matched_ff, lrs)
    softmax_params = _n_params(kind, config, RunSpec("softmax", "softmax", 0, None, config.d_ff))
    todo = []
    for spec in specs:
        h = run_hash(config, kind, spec)
        done = runs.get(spec.key)
        if not (done and done.get("status") == "done" and done.get("run_hash") == h):
            todo.append((spec, h))
    out.mkdir(parents=True, exist_ok=True)  # after every run's settings were checked
    bar = tqdm(todo, desc=f"compare {config.kind}", unit="run", disable=not progress)
    for spec, h in bar:
        bar.set_postfix_str(spec.key)
        run_dir = out / "runs" / spec.folder
        model, measured = train_one(config, kind, spec, run_dir, h)
        n_params = measure.count_parameters(model)
        mc = kind.model_config(config, spec)
        runs[spec.key] = {
            "label": spec.label,
            "attention": spec.attention,
            "seed": spec.seed,
            "lam_neg": spec.lam_neg,
            "options": spec.options,
            "lr": config.train.lr if spec.lr is None else spec.lr,
            "status": "done",
            "run_hash": h,
            "metric": kind.metric,
            "params": n_params,
            "overhead_pct": 100.0 * (n_params - softmax_params) / softmax_params,
            "model_config": mc.to_dict(),
            "run_dir": str(run_dir),
            **measured,
        }
        if config.save_models:
            from gpam.models.io import save_pretrained

            mdir = out / "models" / spec.folder
            save_pretrained(model, mdir)
            if kind.tokenizer is not None:
                kind.tokenizer.save(mdir / "tokenizer.json")
        results["summary"] = summarize_runs(runs, config, kind.metric, matched_ff, lrs)
        atomic_write_json(out / "results.json", results)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # the run is recorded
    results["summary"] = summarize_runs(runs, config, kind.metric, matched_ff, lrs)
    atomic_write_json(out / "results.json", results)
    from gpam.compare.report import write_report

    write_report(results, out)
    return results


def curve_mean(run: dict[str, Any]) -> float | None:
    """Mean validation metric over a run's evaluation points (learning speed: the area under
    the learning curve divided by its length); None when the curve holds no metric."""
    vals = [p["val_metric"] for p in run.get("curve", []) if "val_metric" in p]
    return float(np.mean(vals)) if vals else None


def curve_quantity(runs: list[dict[str, Any]]) -> str:
    """The curve key both views read: ``"val_metric"`` when every evaluation point of every run
    holds the task metric, else ``"val_loss"`` (e.g. NMT, whose BLEU is computed only at the
    end)."""
    pts = [p for r in runs for p in r.get("curve", [])]
    return "val_metric" if pts and all("val_metric" in p for p in pts) else "val_loss"


def run_time(run: dict[str, Any]) -> float | None:
    """Training time (budget clock, validation excluded) at the run's last evaluation point."""
    curve = run.get("curve") or []
    t = curve[-1].get("elapsed_s") if curve else None
    return float(t) if t is not None and math.isfinite(t) else None


def value_at(run: dict[str, Any], x_key: str, x: float, y_key: str) -> float | None:
    """``y_key`` of the run's learning curve at ``x_key == x`` (linear interpolation between
    evaluation points; None outside them: no extrapolation). For ``y_key == "step"`` the curve
    starts at (step 0, time 0)."""
    pts = [p for p in run.get("curve", []) if y_key in p and math.isfinite(p.get(x_key, math.nan))]
    xs, ys = [p[x_key] for p in pts], [p[y_key] for p in pts]
    if y_key == "step":
        xs, ys = [0.0, *xs], [0.0, *ys]
    return interpolate_at(xs, ys, x)


def time_spread(times: list[float]) -> float | None:
    """``(max - min) / mean`` of training times of the same computation (the clock's noise);
    None with fewer than two."""
    return (max(times) - min(times)) / float(np.mean(times)) if len(times) > 1 else None


def _paired(
    rs: dict[int, Any], base: dict[int, Any], value, lab: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Summary of ``value(run)`` over the seeds of ``rs`` and its pairing with ``base``."""
    vals = {s: value(r) for s, r in rs.items()}
    vals = {s: v for s, v in vals.items() if v is not None}
    out = summarize([vals[s] for s in sorted(vals)])
    if lab == "softmax":
        return out, None
    bvals = {s: value(r) for s, r in base.items()}
    seeds = sorted(s for s in vals if bvals.get(s) is not None)
    if not seeds:
        return out, None
    return out, paired_difference([vals[s] for s in seeds], [bvals[s] for s in seeds])


def summarize_runs(
    runs: dict[str, Any],
    config: CompareConfig,
    metric: str,
    matched_ff: int | dict[str, int] | None = None,
    lrs: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Per-label statistics, paired differences to softmax, rank collapse vs metric, and the two
    views of the same runs: **equal steps** (the curve quantity at the common step count S, the
    smallest final step over the runs) and **equal training time** (at T, the smallest training
    time over the runs on the budget clock; validation excluded). The curve quantity is the
    validation metric, or the validation loss when the curves hold no metric (see
    :func:`curve_quantity`); values between evaluation points are interpolated linearly."""
    specs = grid(config, matched_ff, lrs)
    wanted = {s.key for s in specs}
    chosen = [r for k, r in runs.items() if k in wanted and r.get("status") == "done"]
    labels: list[str] = []
    for s in specs:
        if s.label not in labels:
            labels.append(s.label)
    by_label = {lab: {r["seed"]: r for r in chosen if r["label"] == lab} for lab in labels}
    base = by_label.get("softmax", {})
    qkey = curve_quantity(chosen)
    steps = [r["steps"] for r in chosen if r.get("curve")]
    s_common = min(steps) if steps else None
    times = [run_time(r) for r in chosen]
    t_common = min((t for t in times if t is not None), default=None)
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
        tt = {s: run_time(rs[s]) for s in seeds}
        known = [t for t in tt.values() if t is not None]
        row["train_time_mean"] = summarize(known)["mean"]
        # the clock's noise for this variant: same computation, different seeds
        row["time_spread_rel"] = time_spread(known)
        row["clock_ms_per_step"] = summarize(
            [1000 * t / rs[s]["steps"] for s, t in tt.items() if t is not None and rs[s]["steps"]]
        )["mean"]
        if s_common is not None:
            row["at_step"], d = _paired(
                rs, base, lambda r: value_at(r, "step", s_common, qkey), lab
            )
            if d:
                row["at_step_vs_softmax"] = d
        if t_common is not None:
            row["at_time"], d = _paired(
                rs, base, lambda r: value_at(r, "elapsed_s", t_common, qkey), lab
            )
            if d:
                row["at_time_vs_softmax"] = d
            reached = [value_at(rs[s], "elapsed_s", t_common, "step") for s in seeds]
            row["steps_at_time"] = summarize([v for v in reached if v is not None])["mean"]
        rows.append(row)
    corr = correlation([r["rank_collapse"] for r in chosen], [r["final_metric"] for r in chosen])
    spread = {r["label"]: r["time_spread_rel"] for r in rows if r["time_spread_rel"] is not None}
    worst = max(spread, key=spread.get, default=None)
    clocks = sorted({r.get("budget_clock", config.train.budget_clock) for r in chosen})
    return {
        "metric": metric,
        "higher_is_better": metric not in ("perplexity",),
        "n_runs_done": len(chosen),
        "n_runs_planned": len(wanted),
        "lrs": dict(lrs) if lrs else None,
        "variants": rows,
        "rank_collapse_vs_metric": corr,
        "views": {
            "quantity": qkey,
            "quantity_name": metric if qkey == "val_metric" else "loss",
            "quantity_higher_is_better": qkey == "val_metric" and metric != "perplexity",
            "step": s_common,
            "same_steps": len(set(steps)) <= 1,
            "time": t_common,
            "clock": clocks[0] if len(clocks) == 1 else "/".join(clocks),
            "time_spread": None if worst is None else {"label": worst, "rel": spread[worst]},
        },
    }
