"""The training engine every gpam command uses: :func:`train_loop`.

``gpam train lm|nmt``, every ``gpam compare`` kind, ``gpam.hf.finetune`` / ``gpam train lm
--hf-model`` run through it. AdamW with the one parameter-group policy
(:mod:`gpam.train.params`), warmup + inverse-sqrt / cosine / constant schedule, gradient clipping
and accumulation, bfloat16 autocast, periodic validation with early stopping, tqdm progress, a
JSON-lines log (``log.jsonl``), atomic checkpoints and exact resume, DistributedDataParallel when
launched by ``torchrun``. The task supplies a :class:`Task`: batches by position, a loss, a
validation loss (and optional metrics).

Budgets mean the same thing everywhere: ``time_budget`` counts only training steps (the
batches, forward, backward and update of each optimiser step), never validation, checkpoints or
logging, on the chosen clock (``wall``, ``cpu`` = this process's CPU time, or ``steps`` = one unit
per optimiser step, deterministic). The cosine schedule decays over ``max(step / steps, elapsed /
time_budget)``. Under DDP rank 0's clock is the one that counts: its elapsed time, validation
result and early-stopping decision reach every rank, so the replicas share one learning rate and
stop together.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from gpam._io import atomic_write_text
from gpam.data.tokenizer import Tokenizer
from gpam.train.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint
from gpam.train.config import SCHEDULE_FIELDS, TrainConfig
from gpam.train.distributed import (
    DistInfo,
    all_sum,
    barrier,
    from_main,
    gather_to_main,
    rank_seed,
)
from gpam.train.params import parameter_groups
from gpam.train.schedule import lr_factor

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


class Task(Protocol):
    """What the engine needs from a task (LM, NMT, synthetic, Hugging Face LM)."""

    def batch(self, pos: dict[str, int]) -> tuple[Any, dict[str, int]]:
        """The next training micro-batch at data position ``pos`` and the position after it."""

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """Mean training loss of a batch and its number of target tokens."""

    def validate(self, model: nn.Module) -> float | dict[str, float]:
        """Mean validation loss (nats per token), or a dict with ``loss`` and other metrics
        (logged as ``val_<name>``)."""


class BudgetClock:
    """Training time only: :meth:`start` before an optimiser step, :meth:`stop` after it."""

    def __init__(self, kind: str, elapsed: float, device: torch.device) -> None:
        self.kind, self.elapsed, self.device = kind, float(elapsed), device
        self._t0 = 0.0
        self._w0 = 0.0
        self.step_seconds: list[float] = []  # wall time of each step of this process

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self) -> None:
        self._sync()
        self._w0 = time.perf_counter()
        self._t0 = CLOCKS[self.kind]() if self.kind != "steps" else 0.0

    def stop(self) -> None:
        self._sync()
        self.step_seconds.append(time.perf_counter() - self._w0)
        self.elapsed += 1.0 if self.kind == "steps" else CLOCKS[self.kind]() - self._t0


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


def _check_schedule(saved: dict[str, Any] | None, cfg: TrainConfig) -> None:
    if saved is None:
        return
    now = cfg.schedule_state()
    diff = [
        f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in SCHEDULE_FIELDS if saved.get(k) != now[k]
    ]
    if diff:
        raise ValueError(
            "resume: the learning-rate schedule differs from the interrupted run's ("
            + "; ".join(diff)
            + "); resume with the same settings or start a new --out"
        )


def _split_val(val: float | dict[str, float]) -> tuple[float, dict[str, float]]:
    if isinstance(val, dict):
        if "loss" not in val:
            raise ValueError("Task.validate must return a float or a dict with a 'loss' key")
        return float(val["loss"]), {f"val_{k}": float(v) for k, v in val.items() if k != "loss"}
    return float(val), {}


def train_loop(
    model: nn.Module,
    task: Task,
    tokenizer: Tokenizer | None,
    cfg: TrainConfig,
    out: Path | None,
    dist: DistInfo,
    device: torch.device,
    resume: bool = False,
    on_step: Callable[[int], None] | None = None,
    quiet: bool = False,
    after_backward: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` (already on ``device``) and return the final summary dict.

    Writes ``out/log.jsonl`` and ``out/checkpoints/`` (rank 0; nothing when ``out`` is None:
    no checkpoints, no resume). ``on_step(step)`` is called after each optimiser step (after any
    checkpoint) - tests use it to kill the process. ``after_backward(step)`` is called once the
    gradients of a step are complete, before clipping and the update (for analyses that read
    gradients). A non-finite training loss stops the run (``stopped == "diverged"``) before
    its update. Only parameters with ``requires_grad`` train.
    """
    from tqdm.auto import tqdm

    if out is None and resume:
        raise ValueError("resume needs an output folder (out) with checkpoints")
    ck_root = out / "checkpoints" if out is not None else None
    groups = [
        {k: v for k, v in g.items() if k != "names"}
        for g in parameter_groups(model, cfg.weight_decay)
        if g["params"]
    ]
    if not groups:
        raise ValueError("model has no parameter with requires_grad=True to train")
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    st: dict[str, Any] = {
        "step": 0,
        "pos": {},
        "elapsed": 0.0,
        "best_val": None,
        "best_step": None,
        "bad_evals": 0,
        "stopped": None,
        "tokens": 0,
        "schedule": cfg.schedule_state(),
    }
    # dropout and any other randomness during training: a different stream on every rank
    torch.manual_seed(rank_seed(cfg.seed, dist))
    if resume:
        d = latest_checkpoint(ck_root)
        if d is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {ck_root}")
        st = load_checkpoint(d, model, opt, device, dist.rank)
        _check_schedule(st.get("schedule"), cfg)
        st["schedule"] = cfg.schedule_state()
    log_path = out / "log.jsonl" if out is not None else None
    history = _read_log(log_path, st["step"]) if dist.is_main and log_path else []
    if dist.is_main and log_path is not None:
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
    clock = BudgetClock(cfg.budget_clock, st["elapsed"], device)
    wall0, base_wall = time.perf_counter(), st.get("wall", 0.0)
    run_loss, run_tok = 0.0, 0.0
    logf = log_path.open("a") if dist.is_main and log_path is not None else None
    try:
        while st["step"] < cfg.steps and st["stopped"] is None:
            step = st["step"] + 1
            progress = step / cfg.steps
            if cfg.time_budget:
                progress = max(progress, st["elapsed"] / cfg.time_budget)
            if cfg.warmup_fraction:  # warmup measured like the decay: steps or budget used
                warm = min(1.0, progress / cfg.warmup_fraction)
                factor = warm * lr_factor(cfg.schedule, step, 0, progress, cfg.min_lr_ratio)
            else:
                factor = lr_factor(cfg.schedule, step, cfg.warmup, progress, cfg.min_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * factor
            step_tok, step_loss = 0, 0.0
            clock.start()
            for micro in range(cfg.accum):
                batch, st["pos"] = task.batch(st["pos"])
                sync = micro == cfg.accum - 1 or dist.world_size == 1
                ctx = ddp.no_sync() if not sync else _Null()
                with ctx, autocast:
                    loss, ntok = task.loss(ddp, batch)
                (loss.float() / cfg.accum).backward()
                step_loss += float(loss.detach()) * ntok
                step_tok += ntok
            if after_backward is not None:
                after_backward(step)
            gnorm = nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.grad is not None], cfg.clip or float("inf")
            )
            # DDP averages gradients, so a non-finite norm is seen by every rank alike
            diverged = not math.isfinite(float(gnorm)) or (
                dist.world_size == 1 and not math.isfinite(step_loss)
            )
            if not diverged:
                opt.step()
            opt.zero_grad(set_to_none=True)
            clock.stop()
            # one all-reduce: tokens and loss of every rank (NMT batches differ), rank 0's clock
            tok, loss_sum, elapsed = all_sum(
                [step_tok, step_loss, clock.elapsed if dist.is_main else 0.0], dist, device
            )
            clock.elapsed = elapsed
            st["step"] = step
            st["tokens"] += int(tok)
            st["elapsed"] = elapsed
            st["wall"] = base_wall + time.perf_counter() - wall0
            run_loss, run_tok = run_loss + loss_sum, run_tok + tok
            if diverged:
                st["stopped"] = "diverged"
            out_of_time = bool(cfg.time_budget and st["elapsed"] >= cfg.time_budget)
            last = step == cfg.steps or out_of_time or diverged
            row = None
            if step % cfg.log_every == 0 or last:
                row = {
                    "step": step,
                    "loss": run_loss / max(1.0, run_tok),
                    "lr": cfg.lr * factor,
                    "grad_norm": float(gnorm),
                    "elapsed": round(st["elapsed"], 3),
                    "wall": round(st["wall"], 3),
                }
                run_loss, run_tok = 0.0, 0.0
                bar.set_postfix(loss=f"{row['loss']:.3f}")
            if step % cfg.eval_every == 0 or last:
                val, extra = _split_val(from_main(task.validate(model), dist))
                model.train()
                row = row or {"step": step, "elapsed": round(st["elapsed"], 3)}
                row["val_loss"] = val
                row.update(extra)
                st["last_val"], st["last_metrics"] = val, extra
                if st["best_val"] is None or val < st["best_val"]:
                    st["best_val"], st["best_step"], st["bad_evals"] = val, step, 0
                else:
                    st["bad_evals"] += 1
                    if cfg.patience and st["bad_evals"] >= cfg.patience and not st["stopped"]:
                        st["stopped"] = "early_stopping"
            if out_of_time and st["stopped"] is None:
                st["stopped"] = "time_budget"
            if row is not None and dist.is_main:
                if logf is not None:
                    logf.write(json.dumps(row) + "\n")
                    logf.flush()
                history.append(row)
            if ck_root is not None and (step % cfg.checkpoint_every == 0 or last or st["stopped"]):
                states = gather_to_main(rng_state(device), dist)
                if dist.is_main:
                    save_checkpoint(ck_root, model, tokenizer, opt, st, rng=states)
                barrier(dist)
            bar.update(1)
            if on_step is not None:
                on_step(step)
    finally:
        bar.close()
        if logf is not None:
            logf.close()
    times = clock.step_seconds[2:] or clock.step_seconds
    return {
        "steps": st["step"],
        "stopped": st["stopped"] or "steps",
        "elapsed_s": st["elapsed"],
        "budget_clock": cfg.budget_clock,
        "wall_s": st.get("wall", 0.0),
        "step_time_ms": 1000.0 * statistics.median(times) if times else math.nan,
        "tokens": st["tokens"],
        "final_val_loss": st.get("last_val"),
        "final_val_metrics": st.get("last_metrics", {}),
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
