"""The generic training loop shared by LM and NMT training.

AdamW, warmup + inverse-sqrt / cosine schedule, gradient clipping and accumulation, bfloat16
autocast, periodic validation with early stopping, tqdm progress, a JSON-lines log
(``log.jsonl``), atomic checkpoints and exact resume, DistributedDataParallel when launched by
``torchrun``. The task supplies a :class:`Task`: batches by position, a loss, a validation loss.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from gpam._io import atomic_write_text
from gpam.data.tokenizer import Tokenizer
from gpam.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from gpam.train.distributed import DistInfo, all_agree, barrier
from gpam.train.schedule import SCHEDULES, lr_factor


@dataclass
class TrainConfig:
    """Optimisation settings (all JSON-safe)."""

    steps: int = 1000
    time_budget: float | None = None
    budget_clock: str = "wall"
    lr: float = 1e-3
    warmup: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.98
    clip: float = 1.0
    accum: int = 1
    bf16: bool = False
    eval_every: int = 200
    log_every: int = 10
    checkpoint_every: int = 200
    patience: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "accum", "eval_every", "log_every", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.budget_clock not in ("wall", "cpu"):
            raise ValueError(f"budget_clock must be 'wall' or 'cpu', got {self.budget_clock!r}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"time_budget must be > 0 seconds, got {self.time_budget}")
        if self.warmup < 0 or self.clip < 0:
            raise ValueError("warmup and clip must be >= 0")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")


class Task(Protocol):
    """What the loop needs from a task (LM or NMT)."""

    def batch(self, pos: dict[str, int]) -> tuple[Any, dict[str, int]]:
        """The next training micro-batch at data position ``pos`` and the position after it."""

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """Mean training loss of a batch and its number of target tokens."""

    def validate(self, model: nn.Module) -> float:
        """Mean validation loss (nats per token)."""


def _read_log(path: Path, upto: int) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if r.get("step", 0) <= upto:
            rows.append(r)
    return rows


def train_loop(
    model: nn.Module,
    task: Task,
    tokenizer: Tokenizer,
    cfg: TrainConfig,
    out: Path,
    dist: DistInfo,
    device: torch.device,
    resume: bool = False,
    on_step: Callable[[int], None] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train ``model`` (already on ``device``) and return the final summary dict.

    Writes ``out/log.jsonl``, ``out/checkpoints/``; rank 0 only. ``on_step(step)`` is called
    after each optimiser step (after any checkpoint) - tests use it to kill the process.
    """
    from tqdm.auto import tqdm

    ck_root = out / "checkpoints"
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.dim() < 2 or "norm" in n.lower() else decay).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
    )
    st: dict[str, Any] = {
        "step": 0,
        "pos": {},
        "elapsed": 0.0,
        "best_val": None,
        "best_step": None,
        "bad_evals": 0,
        "stopped": None,
        "tokens": 0,
    }
    log_path = out / "log.jsonl"
    if resume:
        d = latest_checkpoint(ck_root)
        if d is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {ck_root}")
        st = load_checkpoint(d, model, opt, device)
    history = _read_log(log_path, st["step"]) if dist.is_main else []
    if dist.is_main:
        atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in history))
    ddp = model
    if dist.world_size > 1:
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    model.train()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    bar = tqdm(
        total=cfg.steps,
        initial=st["step"],
        disable=quiet or not dist.is_main,
        desc="train",
        dynamic_ncols=True,
    )
    # the budget clock: wall seconds, or CPU seconds of this process (robust to a busy machine)
    clock = time.process_time if cfg.budget_clock == "cpu" else time.perf_counter
    start, base_elapsed = clock(), st["elapsed"]
    wall0, base_wall = time.perf_counter(), st.get("wall", 0.0)
    run_loss, run_tok = 0.0, 0
    logf = log_path.open("a") if dist.is_main else None
    try:
        while st["step"] < cfg.steps and st["stopped"] is None:
            step = st["step"] + 1
            elapsed = base_elapsed + clock() - start
            progress = step / cfg.steps
            if cfg.time_budget:
                progress = max(progress, elapsed / cfg.time_budget)
            factor = lr_factor(cfg.schedule, step, cfg.warmup, progress, cfg.min_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * factor
            step_tok = 0
            for micro in range(cfg.accum):
                batch, st["pos"] = task.batch(st["pos"])
                sync = micro == cfg.accum - 1 or dist.world_size == 1
                ctx = ddp.no_sync() if not sync else _Null()
                with ctx, autocast:
                    loss, ntok = task.loss(ddp, batch)
                (loss.float() / cfg.accum).backward()
                run_loss += float(loss.detach()) * ntok
                run_tok += ntok
                step_tok += ntok
            gnorm = nn.utils.clip_grad_norm_(model.parameters(), cfg.clip or float("inf"))
            opt.step()
            opt.zero_grad(set_to_none=True)
            st["step"] = step
            st["tokens"] += step_tok * dist.world_size
            st["elapsed"] = base_elapsed + clock() - start
            st["wall"] = base_wall + time.perf_counter() - wall0
            row = None
            if step % cfg.log_every == 0 or step == cfg.steps:
                row = {
                    "step": step,
                    "loss": run_loss / max(1, run_tok),
                    "lr": cfg.lr * factor,
                    "grad_norm": float(gnorm),
                    "elapsed": round(st["elapsed"], 3),
                    "wall": round(st["wall"], 3),
                }
                run_loss, run_tok = 0.0, 0
                bar.set_postfix(loss=f"{row['loss']:.3f}")
            out_of_time = bool(cfg.time_budget and st["elapsed"] >= cfg.time_budget)
            if dist.world_size > 1 and cfg.time_budget:
                out_of_time = not all_agree(not out_of_time, device)
            last = step == cfg.steps or out_of_time
            if step % cfg.eval_every == 0 or last:
                val = task.validate(model)
                model.train()
                row = row or {"step": step, "elapsed": round(st["elapsed"], 3)}
                row["val_loss"] = val
                st["last_val"] = val
                if st["best_val"] is None or val < st["best_val"]:
                    st["best_val"], st["best_step"], st["bad_evals"] = val, step, 0
                else:
                    st["bad_evals"] += 1
                    if cfg.patience and st["bad_evals"] >= cfg.patience:
                        st["stopped"] = "early_stopping"
            if out_of_time and st["stopped"] is None:
                st["stopped"] = "time_budget"
            if row is not None and dist.is_main:
                logf.write(json.dumps(row) + "\n")
                logf.flush()
                history.append(row)
            if step % cfg.checkpoint_every == 0 or last or st["stopped"]:
                if dist.is_main:
                    save_checkpoint(ck_root, model, tokenizer, opt, st)
                barrier(dist)
            bar.update(1)
            if on_step is not None:
                on_step(step)
    finally:
        bar.close()
        if logf is not None:
            logf.close()
    return {
        "steps": st["step"],
        "stopped": st["stopped"] or "steps",
        "elapsed_s": st["elapsed"],
        "budget_clock": cfg.budget_clock,
        "wall_s": st.get("wall", 0.0),
        "tokens": st["tokens"],
        "final_val_loss": st.get("last_val"),
        "best_val_loss": st["best_val"],
        "best_step": st["best_step"],
        "history": history,
        "train_config": asdict(cfg),
    }


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def nats_to_ppl(loss: float) -> float:
    """Perplexity of a mean loss in nats (inf when it overflows)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def summed_nll(logits: Tensor, targets: Tensor, ignore_index: int = -100) -> tuple[float, int]:
    """Summed cross-entropy (nats) of ``logits (..., V)`` against ``targets (...)``, and the count
    of targets that are not ``ignore_index``: validation losses are ``sum(total) / sum(count)``."""
    total = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=ignore_index,
        reduction="sum",
    )
    return float(total), int((targets != ignore_index).sum())
