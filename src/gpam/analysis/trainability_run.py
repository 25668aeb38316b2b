"""Train every cell of the trainability grid through :func:`gpam.train.train_loop`, resumably.

A cell is (setting, depth, skip weight, qk gain, seed). Each finished cell is written atomically
to ``out/cells/<name>.json`` together with everything that determines it (its fingerprint); with
``resume=True`` a cell whose file holds the same fingerprint is read back instead of retrained,
so a killed grid reruns only its unfinished cells (a cell cut mid-way restarts from step 0).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gpam._io import atomic_write_json
from gpam.analysis.stacks import VariantSpec
from gpam.analysis.trainability_config import Corpus, TrainabilityConfig
from gpam.analysis.trainability_measures import grad_summary, layer_mean, probe_measures
from gpam.analysis.trainability_model import build_model
from gpam.data.lm import LMDataOptions
from gpam.train.distributed import DistInfo
from gpam.train.lm import LMTask
from gpam.train.loop import TrainConfig, train_loop

TRAIN_FIELDS = ("steps", "batch", "length", "width", "heads", "lr", "warmup", "clip")
TRAIN_FIELDS += ("holdout_fraction", "eval_tokens", "probe_batch")


@dataclass(frozen=True)
class Cell:
    """One grid point."""

    spec: VariantSpec
    depth: int
    skip_weight: float
    qk_gain: float
    seed: int

    def name(self) -> str:
        """File-name stem, e.g. ``d8-a0.25-g4-s0-dagpam_lam_neg_1_negate``."""
        slug = re.sub(r"[^A-Za-z0-9.]+", "_", self.spec.label()).strip("_")
        return f"d{self.depth}-a{self.skip_weight:g}-g{self.qk_gain:g}-s{self.seed}-{slug}"


def grid(cfg: TrainabilityConfig) -> list[Cell]:
    """Every cell, seed outermost (a partial grid has whole seeds), then depth, setting, gain
    and skip weight."""
    return [
        Cell(spec, d, a, g, s)
        for s in cfg.seeds
        for d in cfg.depths
        for spec in cfg.specs()
        for g in cfg.qk_gains
        for a in cfg.skip_weights
    ]


def train_config(cfg: TrainabilityConfig, seed: int) -> TrainConfig:
    """AdamW (betas 0.9, 0.999, no weight decay), linear warmup over ``warmup`` steps then a
    constant learning rate, gradient-norm clipping, the training loss logged 10 times, the
    held-out loss only after the last step."""
    n = cfg.steps
    return TrainConfig(
        steps=n,
        lr=cfg.lr,
        warmup=cfg.warmup,
        schedule="constant",
        weight_decay=0.0,
        beta1=0.9,
        beta2=0.999,
        clip=cfg.clip,
        eval_every=n,
        log_every=max(1, n // 10),
        checkpoint_every=n,
        seed=seed,
    )


def fingerprint(cell: Cell, cfg: TrainabilityConfig, corpus: Corpus) -> dict:
    """Everything a cell's result depends on (JSON-safe)."""
    s = cell.spec
    return {
        "variant": s.variant,
        "lam_neg": s.lam_neg,
        "neg_query": s.neg_query if s.variant == "dagpam" else None,
        "neg_init": s.neg_init if s.variant == "dagpam" else None,
        "depth": cell.depth,
        "skip_weight": cell.skip_weight,
        "qk_gain": cell.qk_gain,
        "seed": cell.seed,
        "text_sha256": corpus.sha256,
        **{k: getattr(cfg, k) for k in TRAIN_FIELDS},
    }


def train_cell(
    cell: Cell,
    cfg: TrainabilityConfig,
    corpus: Corpus,
    probe: torch.Tensor,
    on_step: Callable[[int], None] | None = None,
) -> dict:
    """Build, measure, train and measure again one cell; its result record."""
    t0 = time.perf_counter()
    model = build_model(
        cell.spec,
        vocab=corpus.vocab_size,
        length=cfg.length,
        width=cfg.width,
        heads=cfg.heads,
        depth=cell.depth,
        skip_weight=cell.skip_weight,
        qk_gain=cell.qk_gain,
        seed=cell.seed,
    )
    init = probe_measures(model, probe)
    d = LMDataOptions(seq_len=cfg.length, batch_size=cfg.batch, max_eval_tokens=cfg.eval_tokens)
    task = LMTask(corpus.train_ids, corpus.val_ids, d, cell.seed, DistInfo(), torch.device("cpu"))
    q_weight = model.blocks[0].attn.q_proj.weight
    qgrad: list[float | None] = []

    def record(step: int) -> None:
        g = q_weight.grad
        v = math.nan if g is None else float(torch.linalg.vector_norm(g))
        qgrad.append(v if math.isfinite(v) else None)

    res = train_loop(
        model,
        task,
        None,
        train_config(cfg, cell.seed),
        None,
        DistInfo(),
        torch.device("cpu"),
        on_step=on_step,
        quiet=True,
        after_backward=record,
    )
    final = probe_measures(model, probe)
    loss = res["final_val_loss"]
    train_rows = [r for r in res["history"] if "loss" in r]
    return {
        "name": cell.name(),
        "label": cell.spec.label(),
        "fingerprint": fingerprint(cell, cfg, corpus),
        "val_loss": loss if loss is not None and math.isfinite(loss) else None,
        "train_loss_last": train_rows[-1]["loss"] if train_rows else None,
        "train_loss_curve": [[r["step"], r["loss"]] for r in train_rows],
        "stopped": res["stopped"],
        "steps_done": res["steps"],
        "q_grad_norm": qgrad,
        "q_grad": grad_summary(qgrad),
        "init": {**init, "jacobian_rel_mean": layer_mean(init["jacobian_rel"])},
        "final": {**final, "jacobian_rel_mean": layer_mean(final["jacobian_rel"])},
        "wall_s": time.perf_counter() - t0,
    }


def _read_cell(path: Path, fp: dict) -> dict | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return rec if rec.get("fingerprint") == fp else None


def run_grid(
    cfg: TrainabilityConfig,
    corpus: Corpus,
    out: Path | None,
    *,
    resume: bool = False,
    show_progress: bool = True,
    after_cell: Callable[[dict], None] | None = None,
) -> tuple[list[dict], int]:
    """Every cell's record in :func:`grid` order and how many were read back (not retrained).

    ``out``: where cell files go (None: nothing written, no resume). ``after_cell(record)`` is
    called after each newly trained cell is written (tests use it to interrupt the grid).
    """
    if resume and out is None:
        raise ValueError("resume needs an output folder (out)")
    from gpam.data.lm import eval_windows

    probe = next(iter(eval_windows(corpus.val_ids, cfg.length, cfg.probe_batch)))[0]
    cells = grid(cfg)
    cell_dir = Path(out) / "cells" if out is not None else None
    records: list[dict] = []
    reused = 0
    with tqdm(
        total=len(cells) * cfg.steps, desc="trainability", unit="step", disable=not show_progress
    ) as bar:
        for cell in cells:
            path = cell_dir / f"{cell.name()}.json" if cell_dir is not None else None
            rec = None
            if resume and path is not None and path.is_file():
                rec = _read_cell(path, fingerprint(cell, cfg, corpus))
            if rec is not None:
                reused += 1
                bar.update(cfg.steps)
            else:
                bar.set_postfix_str(cell.name(), refresh=False)
                done = bar.n
                rec = train_cell(cell, cfg, corpus, probe, on_step=lambda s: bar.update(1))
                bar.update(done + cfg.steps - bar.n)
                if path is not None:
                    atomic_write_json(path, rec)
                if after_cell is not None:
                    after_cell(rec)
            records.append(rec)
    return records, reused
