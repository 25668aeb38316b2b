"""``gpam analyze trainability``: the paper's dilemma in training.

A character LM (:mod:`gpam.analysis.trainability_model`) whose attention skip weight ``a`` is an
axis is trained per (setting x depth x qk gain x skip weight x seed) through
:func:`gpam.train.train_loop` (:mod:`gpam.analysis.trainability_run`, resumable); per grid point
over seeds the held-out loss against the unigram loss and against the same setting at ``a = 1``,
the first layer's query-gradient norm, the attention stack's residual and the logit Jacobian at
initialisation and after training (:mod:`gpam.analysis.trainability_measures`); then the
"trains" rule and the smallest skip weight that trains
(:mod:`gpam.analysis.trainability_derive`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gpam.analysis._threads import torch_threads
from gpam.analysis.trainability_config import (
    TrainabilityConfig,
    held_out_targets,
    load_corpus,
    unigram_loss,
)
from gpam.analysis.trainability_derive import smallest_skip, summarize
from gpam.analysis.trainability_run import run_grid

RULE = (
    "A grid point trains when every seed ends with a finite held-out loss and the mean over "
    "seeds is below the unigram loss by more than both the seeds' standard deviation (ddof=1) "
    "and the margin of {margin:g} nats."
)


def trainability(
    cfg: TrainabilityConfig | None = None,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    show_progress: bool = True,
) -> dict:
    """Run (or, with ``resume``, finish) the grid; ``{"config", "corpus", "rule", "cells",
    "summary", "smallest_skip", "timing"}``. Cell files go to ``out/cells`` when ``out`` is
    given."""
    cfg = cfg or TrainabilityConfig()
    cfg.validate()
    corpus = load_corpus(cfg)
    targets = held_out_targets(corpus.val_ids, cfg.length, cfg.eval_tokens)
    uni = unigram_loss(corpus.train_ids, targets)
    start, cpu0 = time.perf_counter(), time.process_time()
    records, reused = run_grid(
        cfg, corpus, Path(out) if out is not None else None, resume=resume,
        show_progress=show_progress,
    )  # fmt: skip
    rows = summarize(records, uni, cfg.margin)
    config: dict[str, Any] = asdict(cfg)
    for name in ("variants", "lam_neg", "neg_query", "neg_init", "depths", "seeds"):
        config[name] = list(getattr(cfg, name))
    config["model"] = (
        "char LM: token + learned position embeddings; blocks X = a X + SA(rmsnorm(X)), "
        "X = X + MLP(rmsnorm(X)) (GELU, 4x width); final rmsnorm, linear head; attention "
        "gpam.MultiheadAttention, causal, bias-free, library initialisation, then W_Q, W_K and a "
        "separate negative-query projection times qk_gain"
    )
    config["training"] = (
        "gpam.train.train_loop: AdamW (0.9, 0.999), no weight decay, linear warmup then "
        "constant lr, grad-norm clipping; data order and shared weights paired by seed"
    )
    return {
        "config": config,
        "corpus": {
            "name": corpus.name,
            "sha256": corpus.sha256,
            "vocab_size": corpus.vocab_size,
            "train_tokens": int(corpus.train_ids.numel()),
            "eval_tokens": int(targets.numel()),
            "unigram_loss": uni,
            "unigram_note": "add-one smoothed unigram of the training split, on the held-out "
            "targets the model's loss is averaged over",
        },
        "rule": RULE.format(margin=cfg.margin),
        "cells": records,
        "summary": rows,
        "smallest_skip": smallest_skip(rows),
        "timing": {
            "cells": len(records),
            "reused": reused,
            "wall_s": time.perf_counter() - start,
            "cpu_s": time.process_time() - cpu0,
            "cells_wall_s": sum(r["wall_s"] for r in records),
        },
    }


def run_trainability(
    out: str | Path,
    *,
    resume: bool = False,
    show_progress: bool = True,
    threads: int | None = 1,
    **config: Any,
) -> dict:
    """Run the grid (keywords: :class:`TrainabilityConfig` fields) and write
    ``trainability.json``, the plots and ``report.md`` to ``out``."""
    from gpam.analysis.trainability_outputs import write_trainability

    with torch_threads(threads):
        result = trainability(
            TrainabilityConfig(**config), out, resume=resume, show_progress=show_progress
        )
    write_trainability(result, Path(out))
    return result
