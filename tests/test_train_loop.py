"""The training loop: early stopping, bf16 autocast, gradient accumulation, HF dataset input."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from gpam.data.tokenizer import CharTokenizer
from gpam.train.distributed import DistInfo
from gpam.train.lm import LMDataOptions, train_lm
from gpam.train.loop import TrainConfig, Validation, train_loop

TEXT = "to be or not to be that is the question " * 40


class FakeTask:
    """Random char batches; a scripted validation curve."""

    def __init__(self, vals):
        self.vals = list(vals)
        self.calls = 0

    def batch(self, pos):
        g = torch.Generator().manual_seed(pos.get("i", 0))
        x = torch.randint(4, 20, (2, 8), generator=g)
        return (x, x), {"i": pos.get("i", 0) + 1}

    def loss(self, model, batch):
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1)), 16

    def validate(self, model):
        self.calls += 1
        return Validation(self.vals[self.calls - 1])


def _tiny_lm():
    from gpam.models import LMConfig, TransformerLM

    return TransformerLM(LMConfig(vocab_size=24, d_model=16, n_layers=1, n_heads=2, max_len=8))


def test_early_stopping_stops_after_patience(tmp_path):
    task = FakeTask([3.0, 2.0, 2.5, 2.4, 1.0, 0.5])
    cfg = TrainConfig(steps=6, eval_every=1, patience=2, checkpoint_every=100, warmup=0)
    tok = CharTokenizer.train([TEXT])
    res = train_loop(_tiny_lm(), task, tok, cfg, tmp_path, DistInfo(), torch.device("cpu"),
                     quiet=True)  # fmt: skip
    assert res["stopped"] == "early_stopping" and res["steps"] == 4
    assert res["best_val_loss"] == 2.0 and res["best_step"] == 2
    rows = [json.loads(r) for r in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["val_loss"] for r in rows] == [3.0, 2.0, 2.5, 2.4]
    assert (tmp_path / "checkpoints" / "ckpt-00000004").is_dir()  # saved when it stopped


def test_bf16_autocast_and_accumulation_train(tmp_path):
    tok = CharTokenizer.train([TEXT])
    for name, cfg in (("bf16", TrainConfig(steps=3, bf16=True, accum=2, warmup=1, eval_every=3)),):
        task = FakeTask([1.0])
        res = train_loop(_tiny_lm(), task, tok, cfg, tmp_path / name, DistInfo(),
                         torch.device("cpu"), quiet=True)  # fmt: skip
        rows = [json.loads(r) for r in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        assert res["steps"] == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
        assert res["tokens"] == 3 * 2 * 16  # steps x micro-batches x tokens


def test_accumulation_equals_one_big_batch(tmp_path):
    """Two micro-batches of 2 give the same update as one batch of 4 (both halves are used;
    Adam's first step is nearly sign(grad) * lr, so tiny gradients differ by float noise)."""
    from gpam.models import LMConfig, TransformerLM

    cfg_m = LMConfig(vocab_size=24, d_model=16, n_layers=1, n_heads=2, max_len=8, dropout=0.0)
    x = torch.randint(4, 20, (4, 8), generator=torch.Generator().manual_seed(1))

    class Split(FakeTask):
        def __init__(self, parts):
            super().__init__([1.0])
            self.parts = parts

        def batch(self, pos):
            i = pos.get("i", 0)
            b = self.parts[i % len(self.parts)]
            return (b, b), {"i": i + 1}

        def loss(self, model, batch):
            return super().loss(model, batch)[0], batch[0].numel()

    tok = CharTokenizer.train([TEXT])
    params = []
    for parts, accum in (([x[:2], x[2:]], 2), ([x], 1)):
        torch.manual_seed(0)
        model = TransformerLM(cfg_m)
        cfg = TrainConfig(steps=1, accum=accum, warmup=0, eval_every=1, clip=0.0)
        train_loop(model, Split(parts), tok, cfg, tmp_path / str(accum), DistInfo(),
                   torch.device("cpu"), quiet=True)  # fmt: skip
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(params[0], params[1], rtol=1e-4, atol=2e-5)


def test_hf_text_dataset_trains_offline(tmp_path):
    pytest.importorskip("datasets")
    (tmp_path / "train.txt").write_text("\n".join(["the cat sat on the mat"] * 60) + "\n\n")
    (tmp_path / "valid.txt").write_text("the mat sat on the cat\n" * 10)
    d = LMDataOptions(
        hf_dataset="text", tokenizer="word", seq_len=8, batch_size=2, max_eval_tokens=50,
        hf_data_files={"train": str(tmp_path / "train.txt"),
                       "validation": str(tmp_path / "valid.txt")},
    )  # fmt: skip
    res = train_lm(d, dict(d_model=16, n_layers=1, n_heads=2), TrainConfig(steps=2, warmup=0),
                   tmp_path / "out", quiet=True)  # fmt: skip
    assert res["vocab_size"] == 4 + 5  # specials + the, cat, sat, on, mat
    assert res["val_tokens"] == 10 * 7  # 6 words + <eos> per validation line
    assert res["final_val_loss"] is not None


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_time_budget_stops_and_validates(tmp_path, clock):
    tok = CharTokenizer.train([TEXT])
    cfg = TrainConfig(steps=100000, time_budget=0.3, budget_clock=clock, eval_every=10**6,
                      warmup=0)  # fmt: skip
    task = FakeTask([1.5])
    res = train_loop(_tiny_lm(), task, tok, cfg, tmp_path, DistInfo(), torch.device("cpu"),
                     quiet=True)  # fmt: skip
    assert res["stopped"] == "time_budget" and 1 <= res["steps"] < 100000
    assert res["elapsed_s"] >= 0.3 and res["final_val_loss"] == 1.5  # validated at the end
    assert task.calls == 1


def test_hf_dataset_without_validation_split_holds_out(tmp_path):
    pytest.importorskip("datasets")
    (tmp_path / "train.txt").write_text("abcdefgh ijkl\n" * 50)
    d = LMDataOptions(hf_dataset="text", tokenizer="char", seq_len=8, batch_size=2,
                      hf_data_files={"train": str(tmp_path / "train.txt")})  # fmt: skip
    res = train_lm(d, dict(d_model=16, n_layers=1, n_heads=2), TrainConfig(steps=1, warmup=0),
                   tmp_path / "out", quiet=True)  # fmt: skip
    assert any("last 0.1 of the training split" in n for n in res["data_notes"])
    assert res["val_tokens"] == pytest.approx(0.1 * (14 * 50 - 1), abs=2)


def test_after_backward_sees_complete_gradients_and_nan_stops(tmp_path):
    """The analysis hook runs once per step with every gradient filled in (before clipping);
    a non-finite loss stops the run as "diverged" without applying the update."""
    tok = CharTokenizer.train([TEXT])
    model = _tiny_lm()
    seen = []

    def hook(step):
        seen.append((step, all(p.grad is not None for p in model.parameters())))

    cfg = TrainConfig(steps=3, eval_every=3, warmup=0, clip=1e-9)
    train_loop(model, FakeTask([1.0]), tok, cfg, tmp_path / "a", DistInfo(), torch.device("cpu"),
               quiet=True, after_backward=hook)  # fmt: skip
    assert seen == [(1, True), (2, True), (3, True)]

    class Diverging(FakeTask):
        def loss(self, model, batch):
            loss, n = super().loss(model, batch)
            self.seen = getattr(self, "seen", 0) + 1
            return (loss * float("nan") if self.seen == 2 else loss), n

    model = _tiny_lm()
    res = train_loop(model, Diverging([1.0]), tok, TrainConfig(steps=5, warmup=0, eval_every=5),
                     None, DistInfo(), torch.device("cpu"), quiet=True)  # fmt: skip
    assert res["stopped"] == "diverged" and res["steps"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the NaN step not applied


def test_budget_warmup_and_last_row(tmp_path):
    """With warmup_fraction the warmup and the cosine follow the budget's progress, whatever the
    step cap; the step where the budget ends is logged with its training loss."""
    tok = CharTokenizer.train([TEXT])
    cfg = TrainConfig(steps=10**6, time_budget=10, budget_clock="steps", warmup=0,
                      warmup_fraction=0.2, eval_every=10**6, log_every=10**6)  # fmt: skip
    res = train_loop(_tiny_lm(), FakeTask([1.0]), tok, cfg, tmp_path, DistInfo(),
                     torch.device("cpu"), quiet=True)  # fmt: skip
    assert res["steps"] == 10 and res["stopped"] == "time_budget"
    last = res["history"][-1]
    assert last["step"] == 10 and "loss" in last and last["val_loss"] == 1.0
    # progress at step 10 is 0.9 (elapsed before the step / budget): cosine, after warmup
    import math

    assert last["lr"] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.9))))


def test_validate_has_one_return_shape():
    """Task.validate returns a Validation (loss + named metrics), never a bare float or dict:
    the metrics are logged as val_<name>, anything else is refused by name."""
    tok = CharTokenizer.train([TEXT])
    cfg = TrainConfig(steps=1, warmup=0, eval_every=1)

    class WithMetrics(FakeTask):
        def validate(self, model):
            return Validation(2.0, {"accuracy": 0.25})

    res = train_loop(_tiny_lm(), WithMetrics([]), tok, cfg, None, DistInfo(),
                     torch.device("cpu"), quiet=True)  # fmt: skip
    assert res["final_val_loss"] == 2.0 and res["final_val_metrics"] == {"val_accuracy": 0.25}
    assert Validation(1.5).metrics == {}

    for bad in (1.5, {"loss": 1.5}):

        class Bare(FakeTask):
            def validate(self, model, bad=bad):
                return bad

        with pytest.raises(TypeError, match="Validation"):
            train_loop(_tiny_lm(), Bare([]), tok, cfg, None, DistInfo(), torch.device("cpu"),
                       quiet=True)  # fmt: skip
