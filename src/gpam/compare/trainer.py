"""One training run of a decoder-only LM on a task with ``batch(batch_size, seed)`` (synthetic
tasks, or a text corpus wrapped by :mod:`gpam.compare.corpus`): AdamW, warm-up + cosine schedule,
masked next-token cross-entropy, periodic validation on a fixed set shared by every run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpam.compare import measure
from gpam.data.synthetic import PAD, SyntheticBatch

VAL_SEED = 1_000_003  # validation batches use seeds VAL_SEED + i, whatever the run's seed


class Task(Protocol):
    """What a run needs from a task (``gpam.data.synthetic.SyntheticTask`` satisfies it)."""

    name: str
    seq_len: int
    vocab_size: int
    metric: str

    def batch(self, batch_size: int, seed: int) -> SyntheticBatch: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class TrainSettings:
    """Budget and optimisation settings shared by every run of a comparison."""

    steps: int = 300
    time_budget: float | None = None  # seconds per run; then ``steps`` is only a cap
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of ``steps``
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_batches: int = 4
    eval_batch_size: int = 64
    device: str = "cpu"


@dataclass
class RunOutcome:
    """What a run measured (JSON-safe through :meth:`to_dict`)."""

    final_metric: float
    final_loss: float
    steps: int
    wall_s: float
    time_per_step_ms: float
    peak_memory_mb: float
    memory_method: str
    rank_collapse: float
    curve: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of every field."""
        return dict(self.__dict__)


def check_device(device: str) -> torch.device:
    """``torch.device(device)``, or ValueError naming ``device`` when it is unknown/unavailable."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"device must be a torch device such as cpu or cuda:0, got {device!r}"
        ) from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    return dev


def masked_loss(model: nn.Module, batch: SyntheticBatch) -> Tensor:
    """Mean cross-entropy over the positions in ``batch.loss_mask``."""
    logits = model(batch.inputs)
    return F.cross_entropy(logits[batch.loss_mask], batch.targets[batch.loss_mask])


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, batches: list[SyntheticBatch]) -> tuple[float, float]:
    """``(loss, metric)`` on ``batches``: accuracy of the scored tokens, or perplexity."""
    was = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for b in batches:
        logits = model(b.inputs)[b.loss_mask]
        tgt = b.targets[b.loss_mask]
        total_loss += float(F.cross_entropy(logits.float(), tgt, reduction="sum"))
        correct += int((logits.argmax(-1) == tgt).sum())
        count += int(tgt.numel())
    model.train(was)
    loss = total_loss / max(count, 1)
    metric = math.exp(min(loss, 50.0)) if task.metric == "perplexity" else correct / max(count, 1)
    return loss, metric


def validation_batches(task: Task, settings: TrainSettings) -> list[SyntheticBatch]:
    """The fixed validation set (same for every run and seed)."""
    fn = getattr(task, "validation_batches", None)
    if fn is not None:
        batches = fn(settings.eval_batches, settings.eval_batch_size)
    else:
        batches = [
            task.batch(settings.eval_batch_size, seed=VAL_SEED + i)
            for i in range(settings.eval_batches)
        ]
    return [b.to(settings.device) for b in batches]


def _lr_factor(step: int, settings: TrainSettings) -> float:
    warm = max(1, int(settings.warmup * settings.steps))
    if step < warm:
        return (step + 1) / warm
    if settings.time_budget is not None:
        return 1.0
    progress = (step - warm) / max(1, settings.steps - warm)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_run(model: nn.Module, task: Task, settings: TrainSettings, seed: int) -> RunOutcome:
    """Train ``model`` on ``task`` for the budget in ``settings``; data order follows ``seed``."""
    dev = torch.device(settings.device)
    model.to(dev).train()
    val = validation_batches(task, settings)
    opt = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.98)
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, settings))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        memory_method = "cuda max_memory_allocated"
        act = 0
    else:
        act = measure.activation_bytes(
            model, masked_loss, task.batch(settings.batch_size, 0).to(dev)
        )
        memory_method = "cpu estimate: params+grads+AdamW state+saved activations of one step"
    curve: list[dict[str, float]] = []
    step_times: list[float] = []
    window: list[float] = []
    start = time.perf_counter()
    step = 0
    while step < settings.steps:
        if settings.time_budget is not None and time.perf_counter() - start >= settings.time_budget:
            break
        batch = task.batch(settings.batch_size, seed=seed * 1_000_000 + step).to(dev)
        t0 = time.perf_counter()
        loss = masked_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        opt.step()
        sched.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        step_times.append(time.perf_counter() - t0)
        window.append(loss.item())
        step += 1
        if step % settings.eval_every == 0 or step == settings.steps:
            vl, vm = evaluate(model, task, val)
            curve.append(
                {
                    "step": step,
                    "elapsed_s": time.perf_counter() - start,
                    "train_loss": sum(window) / len(window),
                    "val_loss": vl,
                    "val_metric": vm,
                }
            )
            window = []
    wall = time.perf_counter() - start
    if not curve or curve[-1]["step"] != step:
        vl, vm = evaluate(model, task, val)
        train_loss = sum(window) / len(window) if window else math.nan
        curve.append(
            {
                "step": step,
                "elapsed_s": wall,
                "train_loss": train_loss,
                "val_loss": vl,
                "val_metric": vm,
            }
        )
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev)
    else:
        peak = measure.state_bytes(model) + act
    times = sorted(step_times[2:] or step_times)
    hidden = measure.final_hidden_states(model, val[0].inputs)
    rc = measure.rank_collapse(hidden, keep=val[0].inputs != PAD)
    return RunOutcome(
        final_metric=curve[-1]["val_metric"],
        final_loss=curve[-1]["val_loss"],
        steps=step,
        wall_s=wall,
        time_per_step_ms=1000 * times[len(times) // 2] if times else math.nan,
        peak_memory_mb=peak / 2**20,
        memory_method=memory_method,
        rank_collapse=rc,
        curve=curve,
    )
