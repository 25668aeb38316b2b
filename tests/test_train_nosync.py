"""Issue 19 item 4: a training step reads nothing back from the device between two log steps,
and the numbers it logs are those of a plain loop that reads the loss every step."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from gpam.data.synthetic import SyntheticBatch
from gpam.train.distributed import DistInfo
from gpam.train.loop import TrainConfig, Validation, train_loop
from gpam.train.synthetic import masked_loss

READS = ("item", "__float__", "__int__", "__bool__", "tolist", "cpu", "numpy")


class Reads:
    """Counts calls of the Tensor methods that copy a value to the host (``READS``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on, self.calls = False, []
        for name in READS:
            orig = getattr(torch.Tensor, name)

            def wrapper(t, *a, _orig=orig, _name=name, **k):
                if self.on:
                    self.calls.append(_name)
                return _orig(t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, wrapper)


def _device_like_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch off the models' data-dependent input checks, which run only on the CPU (never on
    CUDA unless ``GPAM_DEBUG_CHECKS=1``): what is left is what a CUDA step would read."""
    import gpam.functional._checks as checks
    import gpam.functional.sigmoid as sigmoid
    import gpam.models.lm as lm

    for mod in (checks, sigmoid, lm):
        monkeypatch.setattr(mod, "data_checks_enabled", lambda t: False)


class Task:
    """Random token batches with a varying count of scored targets (a device tensor, like NMT)."""

    def __init__(self, dtype=torch.float32):
        self.dtype = dtype

    def batch(self, pos):
        i = pos.get("i", 0)
        g = torch.Generator().manual_seed(i)
        x = torch.randint(1, 20, (2, 8), generator=g)
        y = x.clone()
        y[:, : i % 3] = -100  # a different number of targets per batch
        return (x, y), {"i": i + 1}

    def loss(self, model, batch):
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), (
            y != -100
        ).sum()

    def validate(self, model):
        return Validation(1.0)


def _lm(dtype=torch.float32, dropout=0.0):
    from gpam.models import LMConfig, TransformerLM

    torch.manual_seed(0)
    cfg = LMConfig(vocab_size=24, d_model=16, n_layers=1, n_heads=2, max_len=8, dropout=dropout)
    return TransformerLM(cfg).to(dtype)


@pytest.mark.parametrize("accum", [1, 2])
def test_no_host_read_between_log_steps(monkeypatch, accum):
    """Steps 6..9 of a run logging every 5 steps call none of ``READS`` (steps 5 and 10 may)."""
    _device_like_checks(monkeypatch)
    reads = Reads(monkeypatch)
    per_step = {}

    def on_step(step):
        per_step[step] = len(reads.calls)
        reads.calls.clear()
        reads.on = step in (5, 6, 7, 8)  # so steps 6, 7, 8, 9 are counted

    cfg = TrainConfig(steps=10, warmup=2, log_every=5, eval_every=10, checkpoint_every=10,
                      accum=accum, clip=0.5)  # fmt: skip
    res = train_loop(_lm(), Task(), None, cfg, None, DistInfo(), torch.device("cpu"),
                     on_step=on_step, quiet=True)  # fmt: skip
    assert res["steps"] == 10
    assert [per_step[s] for s in (6, 7, 8, 9)] == [0, 0, 0, 0]


def test_the_counter_sees_reads(monkeypatch):
    """The counter would fail the test above: a loop step that called ``float(loss)`` counts."""
    reads = Reads(monkeypatch)
    reads.on = True
    t = torch.ones(2)
    float(t.sum()), t.tolist(), bool(t.sum() > 0), int(t[0]), t.sum().item()
    assert reads.calls == ["__float__", "tolist", "__bool__", "__int__", "item"]


def _plain_losses(model, task, steps, log_every, lr, clip, accum):
    """The logged mean losses of a plain AdamW loop (default implementation, a host read per
    micro-batch), with the engine's constant schedule and token weighting."""
    from gpam.train.params import parameter_groups

    groups = [{k: v for k, v in g.items() if k != "names"} for g in parameter_groups(model, 0.01)]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))
    pos, rows, run_l, run_n = {}, [], 0.0, 0.0
    for step in range(1, steps + 1):
        tot = 0.0
        for _ in range(accum):
            batch, pos = task.batch(pos)
            loss, n = task.loss(model, batch)
            n = float(n)
            (loss * n if accum > 1 else loss).backward()
            run_l, run_n, tot = run_l + float(loss.detach()) * n, run_n + n, tot + n
        if accum > 1:
            for p in model.parameters():
                p.grad.div_(tot)
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), clip)
        opt.step()
        opt.zero_grad()
        if step % log_every == 0:
            rows.append(run_l / run_n)
            run_l, run_n = 0.0, 0.0
    return rows


@pytest.mark.parametrize(
    "dtype,accum", [(torch.float64, 1), (torch.float64, 2), (torch.float32, 1)]
)
def test_logged_losses_match_a_plain_loop(tmp_path, dtype, accum):
    cfg = TrainConfig(steps=12, warmup=0, schedule="constant", lr=3e-3, log_every=3,
                      eval_every=12, checkpoint_every=100, clip=0.5, accum=accum)  # fmt: skip
    train_loop(_lm(dtype), Task(), None, cfg, tmp_path, DistInfo(), torch.device("cpu"),
               quiet=True)  # fmt: skip
    rows = [json.loads(r) for r in (tmp_path / "log.jsonl").read_text().splitlines()]
    got = [r["loss"] for r in rows if "loss" in r]
    want = _plain_losses(_lm(dtype), Task(), 12, 3, 3e-3, 0.5, accum)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert len(got) == 4 and got == pytest.approx(want, rel=tol, abs=tol)
    assert all(math.isfinite(r["grad_norm"]) for r in rows if "loss" in r)


def test_divergence_between_log_steps_stops_at_that_step():
    """A NaN loss at step 3 of a run logging every 5 steps: the run stops as diverged with
    steps == 3, and neither step 3 nor the steps computed after it changed the weights."""

    class NaNAt3(Task):
        seen = 0

        def loss(self, model, batch):
            loss, n = super().loss(model, batch)
            self.seen += 1
            return (loss * float("nan") if self.seen == 3 else loss), n

    model = _lm()
    after = {}

    def on_step(step):
        after[step] = [p.detach().clone() for p in model.parameters()]

    cfg = TrainConfig(steps=20, warmup=0, log_every=5, eval_every=20, checkpoint_every=20)
    res = train_loop(model, NaNAt3(), None, cfg, None, DistInfo(), torch.device("cpu"),
                     on_step=on_step, quiet=True)  # fmt: skip
    assert res["stopped"] == "diverged" and res["steps"] == 3
    assert 2 in after and all(torch.equal(a, b) for a, b in zip(after[2], model.parameters()))
    assert math.isnan(res["history"][-1]["loss"]) and res["history"][-1]["step"] == 3


def test_masked_loss_ignores_rather_than_indexes():
    """The synthetic loss (now without boolean indexing) equals the indexed mean; float64
    logits stay float64."""
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7, dtype=torch.float64)
    targets = torch.randint(0, 7, (3, 5))
    mask = torch.rand(3, 5) > 0.4
    b = SyntheticBatch(inputs=torch.zeros(3, 5, dtype=torch.long), targets=targets, loss_mask=mask)
    got = masked_loss(lambda x: logits, b)
    want = F.cross_entropy(logits[mask], targets[mask])
    assert got.dtype == torch.float64 and torch.allclose(got, want, rtol=1e-14)


def test_loss_logits_leaves_the_cast_to_autocast():
    """Under CPU autocast bf16 logits go to cross-entropy as they are (no float32 copy) and give
    the same loss and gradient as the explicit cast; outside autocast they are upcast; float64
    stays float64."""
    from gpam.train.nll import loss_logits

    torch.manual_seed(0)
    x = torch.randn(32, 11, dtype=torch.bfloat16, requires_grad=True)
    y = torch.randint(0, 11, (32,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert loss_logits(x) is x
        a, b = F.cross_entropy(loss_logits(x), y), F.cross_entropy(x.float(), y)
    (ga,), (gb,) = torch.autograd.grad(a, x), torch.autograd.grad(b, x)
    assert a.dtype == torch.float32 and torch.equal(a, b) and torch.equal(ga, gb)
    assert loss_logits(x).dtype == torch.float32
    assert loss_logits(x.double()).dtype == torch.float64
