"""The engine task of the built-in synthetic tasks (``gpam compare synthetic``, ``gpam demo``):
a task with ``batch(batch_size, seed)`` returning a ``gpam.data.synthetic.SyntheticBatch``.

Training batch ``i`` of a run with seed ``s`` is ``task.batch(batch_size, s * 1_000_000 + i)``,
a pure function of the data position, so a resumed run draws the same batches. Validation uses a
fixed set shared by every run and seed (``task.validation_batches`` when the task has it, else
seeds ``VAL_SEED + i``). The loss is next-token cross-entropy over the scored positions
(``loss_mask``); the metric is the accuracy of the scored tokens, or perplexity.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpam.data.synthetic import SyntheticBatch
from gpam.train.loop import Validation
from gpam.train.nll import loss_logits

IGNORE = -100  # the target of positions outside the loss mask
VAL_SEED = 1_000_003  # validation batches use seeds VAL_SEED + i, whatever the run's seed


class BatchTask(Protocol):
    """What a synthetic task offers (``gpam.data.synthetic.SyntheticTask`` satisfies it)."""

    name: str
    seq_len: int
    vocab_size: int
    metric: str

    def batch(self, batch_size: int, seed: int) -> SyntheticBatch: ...

    def describe(self) -> dict[str, Any]: ...


def masked_loss(model: nn.Module, batch: SyntheticBatch) -> Tensor:
    """Mean cross-entropy over the positions in ``batch.loss_mask`` (the other targets are
    ignored rather than indexed away: boolean indexing would wait for the device)."""
    logits = model(batch.inputs)
    targets = batch.targets.masked_fill(~batch.loss_mask, IGNORE)
    return F.cross_entropy(
        loss_logits(logits).reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
    )


def validation_batches(
    task: BatchTask, n_batches: int, batch_size: int, device: torch.device
) -> list[SyntheticBatch]:
    """The fixed validation set (the same for every run and seed)."""
    fn = getattr(task, "validation_batches", None)
    if fn is not None:
        batches = fn(n_batches, batch_size)
    else:
        batches = [task.batch(batch_size, seed=VAL_SEED + i) for i in range(n_batches)]
    return [b.to(device) for b in batches]


@torch.no_grad()
def evaluate_batches(
    model: nn.Module, metric: str, batches: list[SyntheticBatch]
) -> dict[str, float]:
    """``{"loss": mean nats per scored token, metric: accuracy or perplexity}``."""
    was = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    for b in batches:
        logits = model(b.inputs)[b.loss_mask].float()
        tgt = b.targets[b.loss_mask]
        total += float(F.cross_entropy(logits, tgt, reduction="sum"))
        correct += int((logits.argmax(-1) == tgt).sum())
        count += int(tgt.numel())
    model.train(was)
    loss = total / max(count, 1)
    value = math.exp(min(loss, 50.0)) if metric == "perplexity" else correct / max(count, 1)
    return {"loss": loss, metric: value}


class SyntheticTrainTask:
    """Batches, loss and validation of a synthetic task for :func:`gpam.train.train_loop`."""

    def __init__(
        self,
        task: BatchTask,
        batch_size: int,
        seed: int,
        device: torch.device,
        eval_batches: int = 4,
        eval_batch_size: int = 64,
    ) -> None:
        self.task, self.batch_size, self.seed, self.device = task, batch_size, seed, device
        self.val = validation_batches(task, eval_batches, eval_batch_size, device)

    def sample(self, i: int = 0) -> SyntheticBatch:
        """Training batch number ``i`` (on the device)."""
        return self.task.batch(self.batch_size, seed=self.seed * 1_000_000 + i).to(self.device)

    def batch(self, pos: dict[str, int]) -> tuple[SyntheticBatch, dict[str, int]]:
        i = pos.get("batch", 0)
        return self.sample(i), {"batch": i + 1}

    def loss(self, model: nn.Module, batch: SyntheticBatch) -> tuple[Tensor, Tensor]:
        return masked_loss(model, batch), batch.loss_mask.sum()

    def validate(self, model: nn.Module) -> Validation:
        res = evaluate_batches(model, self.task.metric, self.val)
        return Validation(res.pop("loss"), res)
