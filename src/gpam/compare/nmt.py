"""``gpam compare nmt``: the variants x seeds grid for translation, through ``gpam.train``.

Each run is one :func:`gpam.train.nmt.train_nmt` call in ``OUT/runs/<label>_seed=<n>/`` (its
checkpoints make an interrupted run continue where it stopped). The final metric is corpus BLEU
(sacrebleu, greedy/beam search on the first ``bleu_limit`` validation pairs, via
:func:`gpam.train.evaluate.evaluate_nmt`) or, with ``bleu_limit=0``, validation perplexity.
Time per step is the training loop's elapsed time / steps; peak memory is measured on CUDA only.
Rank collapse is not measured for encoder-decoder models (reported as n/a).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gpam._io import atomic_write_json
from gpam.compare.runner import CompareConfig, RunSpec, grid, load_results, summarize_runs


class _NMTTaskInfo:
    """What the grid and report need to know about the translation task."""

    def __init__(self, name: str, metric: str, data: Any, bleu_limit: int, beam_size: int):
        self.name, self.metric = name, metric
        self._desc = {
            "task": name,
            "metric": metric,
            "bleu_limit": bleu_limit,
            "beam_size": beam_size,
            "tokenizer": data.tokenizer,
            "max_len": data.max_len,
        }

    def describe(self) -> dict[str, Any]:
        return dict(self._desc)


def _model_kwargs(config: CompareConfig, spec: RunSpec) -> dict[str, Any]:
    kw: dict[str, Any] = dict(
        d_model=config.d_model,
        n_heads=config.n_heads,
        n_encoder_layers=config.n_layers,
        n_decoder_layers=config.n_layers,
        encoder_attention=spec.attention,
        decoder_attention=spec.attention,
        cross_attention=spec.attention,
        attention_layers=config.attention_layers,
        dropout=config.dropout,
    )
    if spec.lam_neg is not None:
        kw["lam_neg"] = float(spec.lam_neg)
    return kw


def run_compare_nmt(
    config: CompareConfig,
    data: Any,
    out: str | os.PathLike,
    *,
    bleu_limit: int = 200,
    beam_size: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every variant x seed with ``gpam.train.nmt.train_nmt`` on ``data``
    (a ``gpam.train.nmt.NMTDataOptions``) and write the comparison report into ``out``."""
    from gpam.train.checkpoint import latest_checkpoint
    from gpam.train.evaluate import evaluate_nmt
    from gpam.train.loop import TrainConfig
    from gpam.train.nmt import train_nmt

    config.validate()
    if config.match_params:
        raise ValueError("match_params is not supported for nmt comparisons yet")
    if bleu_limit < 0:
        raise ValueError(f"bleu_limit must be >= 0, got {bleu_limit}")
    use_bleu = bleu_limit > 0 and bool(data.valid_src and data.valid_tgt)
    name = data.hf_dataset or Path(data.train_src).name
    task = _NMTTaskInfo(name, "bleu" if use_bleu else "perplexity", data, bleu_limit, beam_size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(out)
    results.update(kind="nmt", task=task.describe(), config=config.to_dict())
    runs: dict[str, Any] = results.setdefault("runs", {})
    specs = grid(config, task)
    t = config.train
    softmax_params: int | None = None
    bar = tqdm(specs, desc="compare nmt", unit="run", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(spec.key)
        done = runs.get(spec.key)
        if done and done.get("status") == "done":
            softmax_params = softmax_params or (
                done["params"] if spec.attention == "softmax" else None
            )
            continue
        run_dir = out / "runs" / spec.key.replace("/", "_")
        tc = TrainConfig(
            steps=t.steps,
            time_budget=t.time_budget,
            lr=t.lr,
            warmup=max(1, int(t.warmup * t.steps)),
            eval_every=t.eval_every,
            checkpoint_every=t.eval_every,
            log_every=max(1, min(10, t.eval_every)),
            seed=spec.seed,
        )
        resume = latest_checkpoint(run_dir / "checkpoints") is not None
        cuda = t.device.startswith("cuda")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        res = train_nmt(
            data,
            _model_kwargs(config, spec),
            tc,
            run_dir,
            device=t.device,
            resume=resume,
            quiet=True,
        )
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else math.nan
        params = int(res["parameters"]["total"])
        if spec.attention == "softmax" and spec.label == "softmax":
            softmax_params = params
        ppl = math.exp(min(50.0, res["final_val_loss"]))
        metric = ppl
        if use_bleu:
            ev = evaluate_nmt(
                run_dir / "model",
                data.valid_src,
                data.valid_tgt,
                beam_size=beam_size,
                limit=bleu_limit,
                device=t.device,
                progress=False,
            )
            metric = float(ev["bleu"])
        curve = [
            {
                "step": r["step"],
                "train_loss": r.get("loss", math.nan),
                "val_loss": r["val_loss"],
                **({} if use_bleu else {"val_metric": math.exp(min(50.0, r["val_loss"]))}),
            }
            for r in res["history"]
            if "val_loss" in r
        ]
        base = softmax_params or params
        runs[spec.key] = {
            "label": spec.label,
            "attention": spec.attention,
            "seed": spec.seed,
            "lam_neg": spec.lam_neg,
            "status": "done",
            "metric": task.metric,
            "final_metric": metric,
            "final_loss": res["final_val_loss"],
            "valid_perplexity": ppl,
            "params": params,
            "overhead_pct": 100.0 * (params - base) / base,
            "steps": res["steps"],
            "wall_s": res["elapsed_s"],
            "time_per_step_ms": 1000.0 * res["elapsed_s"] / max(1, res["steps"]),
            "peak_memory_mb": peak,
            "memory_method": "cuda max_memory_allocated" if cuda else "not measured on CPU (nmt)",
            "rank_collapse": math.nan,
            "curve": curve,
            "model_config": res["model_config"],
            "run_dir": str(run_dir),
        }
        results["summary"] = summarize_runs(runs, config, task)
        atomic_write_json(out / "results.json", results)
    soft = [r["params"] for r in runs.values() if r["label"] == "softmax"]
    if soft:  # overheads relative to the softmax model, whatever order the runs came in
        for r in runs.values():
            r["overhead_pct"] = 100.0 * (r["params"] - soft[0]) / soft[0]
    results["summary"] = summarize_runs(runs, config, task)
    atomic_write_json(out / "results.json", results)
    from gpam.compare.report import write_report

    write_report(results, out)
    return results
