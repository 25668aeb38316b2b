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

The gradient of a step is the token-weighted mean over all of its targets: each micro-batch's
mean loss is weighted by its target count and the summed gradient is divided by the step's
total count over every micro-batch and every rank (as fairseq does), so accumulation and DDP
give the gradient of one big batch even when batches hold different numbers of targets (NMT).

A step does not wait for the device: the loss, target counts, gradient norm and a non-finite
flag stay on the device (:mod:`gpam.train.step_totals`) and are read once at the log, eval and
checkpoint steps (and when the budget ends or a signal came); step times come from CUDA events
on CUDA (:mod:`gpam.train.clock`). The fused AdamW skips the update on the device from a step
whose loss or gradient norm is not finite on; at the next read the run stops as ``diverged``
with ``steps`` = that step (the steps computed after it changed nothing). ``compile``
(:mod:`gpam.train.compiled`) compiles the model before the first step and reports the time.

Resume (:mod:`gpam.train.resume`) refuses a changed model, data or optimisation setting and
applies and records a changed step count, budget, patience or frequency. SIGINT / SIGTERM
(:mod:`gpam.train.interrupt`) finish the step in progress, write a checkpoint and raise
``TrainingInterrupted``. With early stopping the best validation weights are kept on disk
(``checkpoints/best-<step>/``); the summary's ``best_weights`` names them.
"""

from __future__ import annotations

import json
import math
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from gpam._io import atomic_write_text
from gpam.data.tokenizer import Tokenizer
from gpam.train.checkpoint import (
    best_dir,
    checkpoint_dir,
    latest_checkpoint,
    load_checkpoint,
    prune_best,
    read_trainer_state,
    rng_state,
    save_best,
    save_checkpoint,
)
from gpam.train.clock import CLOCKS, BudgetClock
from gpam.train.compiled import compile_model
from gpam.train.config import TrainConfig
from gpam.train.distributed import (
    DistInfo,
    all_sum,
    barrier,
    from_main,
    gather_to_main,
    rank_seed,
    sum_in_place,
)
from gpam.train.interrupt import SignalFlag, TrainingInterrupted
from gpam.train.nll import at_least_fp32
from gpam.train.params import parameter_groups
from gpam.train.resume import (
    Settings,
    compare_settings,
    legacy_settings,
    reopen_stops,
    run_settings,
)
from gpam.train.schedule import lr_factor
from gpam.train.step_totals import StepTotals, keep_fused, make_adamw

__all__ = ["CLOCKS", "BudgetClock", "Task", "TrainConfig", "Validation", "train_loop"]


@dataclass(frozen=True)
class Validation:
    """What :meth:`Task.validate` returns: the mean validation ``loss`` (nats per token) and
    any other ``metrics`` by name (logged as ``val_<name>``)."""

    loss: float
    metrics: dict[str, float] = field(default_factory=dict)


class Task(Protocol):
    """What the engine needs from a task (LM, NMT, synthetic, Hugging Face LM)."""

    def batch(self, pos: dict[str, int]) -> tuple[Any, dict[str, int]]:
        """The next training micro-batch at data position ``pos`` and the position after it."""

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int | torch.Tensor]:
        """Mean training loss of a batch and its number of target tokens (an int, or a 0-dim
        tensor on the device so that counting needs no host sync)."""

    def validate(self, model: nn.Module) -> Validation:
        """The validation loss and metrics of ``model``."""


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


def _resume_state(
    ck_root: Path, settings: Settings, model: nn.Module, opt: torch.optim.Optimizer,
    cfg: TrainConfig, dist: DistInfo, device: torch.device,
) -> dict[str, Any]:  # fmt: skip
    """The trainer state of the latest checkpoint, loaded into ``model`` / ``opt`` once its
    settings are checked against ``settings`` (ValueError naming every refused difference)."""
    d = latest_checkpoint(ck_root)
    if d is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {ck_root}")
    meta = read_trainer_state(d)
    saved = meta["trainer"].get("settings")
    where = f"the run in {ck_root.parent}"
    if saved is None:  # written before settings were recorded
        saved = legacy_settings(meta["trainer"], meta["optimizer"])
        changed = compare_settings(saved, settings, where, partial=True)
    else:
        changed = compare_settings(saved, settings, where)
    st = load_checkpoint(d, model, opt, device, dist.rank)
    st["settings"], st["schedule"] = settings, cfg.schedule_state()
    if changed:
        st["resumes"] = [*st.get("resumes", []), {"step": st["step"], "changed": changed}]
    reopen_stops(st, cfg)
    if dist.is_main:
        what = "; ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        print(f"resuming from step {st['step']}" + (f" (changed: {what})" if what else ""),
              flush=True)  # fmt: skip
    return st


def _token_weighted(model: nn.Module, tokens: Tensor, world_size: int) -> None:
    """Turn gradients of ``sum(mean loss * targets)`` (averaged over ranks by DDP) into the
    gradient of the mean over all ``tokens`` targets of the step, in place, without a host sync."""
    scale = world_size / tokens.clamp_min(1.0)
    by_dtype: dict[torch.dtype, Tensor] = {}
    for p in model.parameters():
        if p.grad is not None:
            g = p.grad
            g.mul_(by_dtype.setdefault(g.dtype, scale.to(g.dtype)))


def _split_val(val: Validation) -> tuple[float, dict[str, float]]:
    if not isinstance(val, Validation):
        raise TypeError(
            f"Task.validate must return a gpam.train.Validation, got {type(val).__name__}"
        )
    return float(val.loss), {f"val_{k}": float(v) for k, v in val.metrics.items()}


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
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Train ``model`` (already on ``device``) and return the final summary dict.

    Writes ``out/log.jsonl`` and ``out/checkpoints/`` (rank 0; nothing when ``out`` is None:
    no checkpoints, no resume). ``on_step(step)`` is called after each optimiser step (after any
    checkpoint) - tests use it to kill the process. ``after_backward(step)`` is called once the
    gradients of a step are complete, before clipping and the update (for analyses that read
    gradients). A non-finite training loss or gradient norm stops the run (``stopped ==
    "diverged"``, ``steps`` = that step) without applying its update; the loop learns of it at
    the next log / eval / checkpoint step (at once with ``after_backward``, which also uses
    torch's default AdamW rather than the fused one). Only
    parameters with ``requires_grad`` train. ``settings``: the task's
    settings (:func:`gpam.train.resume.task_settings`) a resume must match, besides ``cfg``'s.
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
    # an after_backward hook reads the gradients every step anyway: then the loop reads too,
    # stops at a non-finite step at once and uses torch's default AdamW (as a plain loop would)
    opt, fused = make_adamw(
        groups, cfg.lr, (cfg.beta1, cfg.beta2), device, fused=after_backward is None
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
        "schedule": cfg.schedule_state(),
        "settings": run_settings(cfg, dist.world_size, settings),
    }
    # dropout and any other randomness during training: a different stream on every rank
    torch.manual_seed(rank_seed(cfg.seed, dist))
    if resume:
        st = _resume_state(ck_root, st["settings"], model, opt, cfg, dist, device)
        keep_fused(opt, fused)
    # early stopping keeps the best weights (rank 0, on disk: they survive a kill and a resume)
    keep_best = cfg.patience is not None and ck_root is not None and dist.is_main
    ck_best = st["best_step"]  # the best weights the latest checkpoint names
    log_path = out / "log.jsonl" if out is not None else None
    history = _read_log(log_path, st["step"]) if dist.is_main and log_path else []
    if dist.is_main and log_path is not None:
        atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in history))
    net, compile_s = model, None
    if cfg.compile:
        net, compile_s = compile_model(model, task, st["pos"], cfg.bf16, device, dist)
        if dist.is_main and not quiet:
            print(f"torch.compile: {compile_s:.1f} s (first forward and backward)", flush=True)
    ddp = net
    if dist.world_size > 1:
        ddp = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
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
    run_loss, run_tok = 0.0, 0.0  # (host totals of the steps read since the last log row)
    totals, read_at, grad_norm = StepTotals(device), st["step"], math.nan
    logf = log_path.open("a") if dist.is_main and log_path is not None else None
    weighted = cfg.accum > 1 or dist.world_size > 1  # else one batch's mean is already the mean
    signals = SignalFlag(enabled=ck_root is not None).install()
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
            # (targets, summed loss) of this step, on the device: no host sync per micro-batch
            sums = torch.zeros(2, dtype=torch.float64, device=device)
            clock.start()
            for micro in range(cfg.accum):
                batch, st["pos"] = task.batch(st["pos"])
                sync = micro == cfg.accum - 1 or dist.world_size == 1
                ctx = ddp.no_sync() if not sync else _Null()
                with ctx, autocast:
                    loss, ntok = task.loss(ddp, batch)
                n = torch.as_tensor(ntok, dtype=torch.float64, device=device)
                loss = at_least_fp32(loss)
                (loss * n.to(loss.dtype) if weighted else loss).backward()
                sums += torch.stack([n, loss.detach().double() * n])
            # targets and loss of every rank (NMT batches differ); then the token-weighted mean
            sum_in_place(sums, dist)
            if weighted:
                _token_weighted(model, sums[0], dist.world_size)
            if after_backward is not None:
                after_backward(step)
            gnorm = nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.grad is not None], cfg.clip or float("inf")
            )
            # the update is skipped on the device from the first non-finite step on (gradients
            # and loss are summed over ranks: every rank skips alike); the host learns of it at
            # the next read
            found_inf, got = totals.add(sums, gnorm), None
            if fused:
                opt.found_inf = found_inf
                opt.step()
            else:  # (the default AdamW cannot skip on the device: the host decides every step)
                got = totals.read()
                if got[2] is None:
                    opt.step()
            opt.zero_grad(set_to_none=True)
            due = step == cfg.steps or any(
                step % k == 0 for k in (cfg.log_every, cfg.eval_every, cfg.checkpoint_every)
            )
            if due and got is None:  # (inside the clock: the queued device work counts)
                got = totals.read()
            clock.stop()
            # rank 0's clock decides; a signal on any rank stops every rank after this step
            elapsed, n_caught = all_sum(
                [clock.elapsed if dist.is_main else 0.0, 1.0 if signals.signum else 0.0],
                dist,
                device,
            )
            clock.elapsed = elapsed
            st["step"] = step
            st["elapsed"] = elapsed
            st["wall"] = base_wall + time.perf_counter() - wall0
            out_of_time = bool(cfg.time_budget and st["elapsed"] >= cfg.time_budget)
            if got is None and (out_of_time or n_caught):
                got = totals.read()
            diverged = False
            if got is not None:
                tok, loss_sum, first_bad, grad_norm = got
                st["tokens"] += int(tok)
                run_loss, run_tok = run_loss + loss_sum, run_tok + tok
                clock.collect()
                if first_bad is not None:  # no update applied from that step on
                    diverged, step = True, read_at + first_bad
                    st["step"], st["stopped"] = step, "diverged"
                read_at = step
            last = step == cfg.steps or out_of_time or diverged
            row = None
            if step % cfg.log_every == 0 or last:
                row = {
                    "step": step,
                    "loss": run_loss / max(1.0, run_tok),
                    "lr": cfg.lr * factor,
                    "grad_norm": grad_norm,
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
                    if keep_best:
                        save_best(ck_root, model, step, keep=[ck_best])
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
            ck_now = step % cfg.checkpoint_every == 0 or last or st["stopped"] or n_caught
            if ck_root is not None and ck_now:
                states = gather_to_main(rng_state(device), dist)
                if dist.is_main:
                    save_checkpoint(ck_root, model, tokenizer, opt, st, rng=states)
                    if keep_best:
                        prune_best(ck_root, [st["best_step"]])
                ck_best = st["best_step"]
                barrier(dist)
            bar.update(1)
            if n_caught and not (last or st["stopped"]):  # (else the run ends here anyway)
                signum = signals.signum or signal.SIGTERM  # (a rank that got no signal itself)
                raise TrainingInterrupted(signum, step, checkpoint_dir(ck_root, step))
            if on_step is not None:
                on_step(step)
    finally:
        signals.restore()
        bar.close()
        if logf is not None:
            logf.close()
    clock.collect()
    times = clock.step_seconds[2:] or clock.step_seconds
    # (none when early stopping was switched on by a resume after the best step: no copy kept)
    best = best_dir(ck_root, st["best_step"]) if keep_best and st["best_step"] else None
    return {
        "steps": st["step"],
        "stopped": st["stopped"] or "steps",
        "elapsed_s": st["elapsed"],
        "budget_clock": cfg.budget_clock,
        "wall_s": st.get("wall", 0.0),
        "step_time_ms": 1000.0 * statistics.median(times) if times else math.nan,
        "compile_s": compile_s,
        "tokens": st["tokens"],
        "final_val_loss": st.get("last_val"),
        "final_val_metrics": st.get("last_metrics", {}),
        "best_val_loss": st["best_val"],
        "best_step": st["best_step"],
        "best_weights": str(best) if best is not None and best.is_dir() else None,
        "resumes": st.get("resumes", []),
        "history": history,
        "train_config": asdict(cfg),
    }


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None
