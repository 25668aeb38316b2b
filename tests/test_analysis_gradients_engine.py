"""The gradients analysis trains through the one engine (gpam.train.train_loop): same records as
a plain AdamW loop written out here, engine settings, divergence semantics, progress."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from gpam.analysis.bounds import bound_factor
from gpam.analysis.gradients import (
    GradientsConfig,
    RecordingCopyTask,
    _record_layer,
    train_and_record,
)
from gpam.analysis.stacks import VariantSpec
from gpam.analysis.tiny_model import TinyLM, copy_batch

# gpam.analysis re-exports the function gradients(), which hides the module as an attribute
grad_mod = importlib.import_module("gpam.analysis.gradients")
SMALL = {"steps": 4, "batch": 3, "n_tokens": 3, "vocab": 7, "width": 8, "heads": 2, "layers": 2}


def _plain_loop(spec: VariantSpec, cfg: GradientsConfig) -> dict:
    """The reference: AdamW (torch defaults, no decay), constant lr, clipping, written out."""
    torch.manual_seed(cfg.seed)
    model = TinyLM(spec, cfg.vocab, 2 * cfg.n_tokens, cfg.width, cfg.heads, cfg.layers)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    layers: list[dict] = [{} for _ in range(cfg.layers)]
    steps, losses = [], []
    for step in range(cfg.steps):
        ids, tgt, mask = copy_batch(cfg.batch, cfg.n_tokens, cfg.vocab, gen)
        logits, records = model(ids)
        loss = F.cross_entropy(logits[mask], tgt[mask])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step % cfg.record_every == 0 or step == cfg.steps - 1:
            steps.append(step)
            losses.append(loss.item())
            for li, (store, layer) in enumerate(zip(layers, records)):
                soft = spec.variant == "softmax"
                factor = bound_factor(model.blocks[li].attn, cfg.gamma) if soft else None
                _record_layer(store, layer, factor)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
    return {"steps": steps, "loss": losses, "layers": layers}


@pytest.mark.parametrize(
    ("spec", "record_every"),
    [
        (VariantSpec("softmax"), 1),
        (VariantSpec("dagpam", lam_neg=1.0), 3),
        (VariantSpec("diff"), 2),
    ],
)
def test_engine_run_equals_plain_adamw_loop(spec, record_every):
    """Bit-for-bit the same records as the written-out loop (same batches, same updates)."""
    cfg = GradientsConfig(record_every=record_every, clip=0.05, **SMALL)
    got = train_and_record(spec, cfg)
    want = _plain_loop(spec, cfg)
    assert got["steps"] == want["steps"] == sorted({*range(0, 4, record_every), 3})
    assert got["loss"] == want["loss"]
    assert got["layers"] == want["layers"]
    assert got["diverged_at_step"] is None


def test_train_and_record_calls_the_engine_with_constant_lr_no_decay(monkeypatch):
    seen = []
    real = grad_mod.train_loop

    def spy(model, task, tokenizer, cfg, out, dist, device, **kw):
        seen.append((cfg, out, kw.get("after_backward") is not None))
        res = real(model, task, tokenizer, cfg, out, dist, device, **kw)
        seen.append(res)
        return res

    monkeypatch.setattr(grad_mod, "train_loop", spy)
    cfg = GradientsConfig(lr=2e-3, clip=0.5, seed=3, **SMALL)
    train_and_record(VariantSpec("cog"), cfg)
    (tcfg, out, hooked), res = seen
    assert hooked and out is None
    assert (tcfg.steps, tcfg.lr, tcfg.clip, tcfg.seed) == (4, 2e-3, 0.5, 3)
    assert (tcfg.schedule, tcfg.warmup, tcfg.weight_decay, tcfg.accum) == ("constant", 0, 0.0, 1)
    assert (tcfg.beta1, tcfg.beta2, tcfg.bf16) == (0.9, 0.999, False)
    assert res["steps"] == 4 and res["stopped"] == "steps"
    assert {row["lr"] for row in res["history"] if "lr" in row} == {2e-3}


class _Bar:
    def __init__(self) -> None:
        self.n = 0

    def update(self, k: int) -> None:
        self.n += k


def test_nonfinite_loss_stops_at_that_step_unrecorded(monkeypatch):
    """Loss NaN at 0-based step 2: steps 0 and 1 recorded, diverged_at_step == 2, the progress
    bar still advances by the full step count."""
    real = RecordingCopyTask.loss
    calls = []

    def loss(self, model, batch):
        value, n = real(self, model, batch)
        calls.append(1)
        if len(calls) == 3:
            value = value * float("nan")
            self.last_loss = math.nan
        return value, n

    monkeypatch.setattr(RecordingCopyTask, "loss", loss)
    bar = _Bar()
    run = train_and_record(VariantSpec("softmax"), GradientsConfig(**SMALL), bar)
    assert run["diverged_at_step"] == 2 and run["steps"] == [0, 1] and len(run["loss"]) == 2
    assert all(len(lay["logit_grad_norm"]) == 2 for lay in run["layers"])
    assert len(calls) == 3 and bar.n == SMALL["steps"]


def test_nonfinite_gradient_with_finite_loss_is_recorded_then_stops(monkeypatch):
    """A NaN gradient under a finite loss (0 * d sqrt(x)/dx at x = 0, on the head's bias only):
    that step is recorded (the layers' gradients are finite) and is the diverged step."""
    real = RecordingCopyTask.loss
    calls = []

    def loss(self, model, batch):
        value, n = real(self, model, batch)
        calls.append(1)
        if len(calls) == 2:
            b = model.head.bias.sum()
            value = value + 0.0 * torch.sqrt(b - b.detach())
        return value, n

    monkeypatch.setattr(RecordingCopyTask, "loss", loss)
    run = train_and_record(VariantSpec("softmax"), GradientsConfig(**SMALL))
    assert run["diverged_at_step"] == 1 and run["steps"] == [0, 1]
    assert all(math.isfinite(v) for v in run["loss"])
    assert all(v is not None and v > 0 for v in run["layers"][0]["input_grad_norm"])


def test_copy_task_batches_in_order_only():
    task = RecordingCopyTask(GradientsConfig(**SMALL))
    (ids, tgt, mask), pos = task.batch({})
    assert pos == {"batch": 1} and ids.shape == (3, 6) and int(mask.sum()) == 9
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(ids, copy_batch(3, 3, 7, gen)[0])
    with pytest.raises(ValueError, match="pos"):
        task.batch({"batch": 5})
    assert math.isnan(task.validate(None).loss)
