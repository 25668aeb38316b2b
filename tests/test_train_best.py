"""With early stopping, ``model/`` holds the best validation weights (what ``gpam eval`` and
``generate`` load) and ``model-last/`` the last step's; a kill and resume keeps the best
(issue 20 item 8)."""

from __future__ import annotations

import json

import pytest
import torch

import gpam.train.lm as lm_mod
from gen_data import write_text
from gpam.models import from_pretrained
from gpam.train.evaluate import load_model
from gpam.train.lm import LMDataOptions, train_lm
from gpam.train.loop import TrainConfig, Validation

# validation after steps 1..6: the best is step 2, patience 2 stops after step 4
VALS = [3.0, 2.0, 2.5, 2.4, 1.0, 0.5]
KW = dict(d_model=16, n_layers=1, n_heads=2, dropout=0.0)


class Interrupt(Exception):
    pass


@pytest.fixture
def scripted(monkeypatch):
    """Validation returns VALS in order (``calls`` counts them); ``weights[step]`` holds the
    parameters after each step."""
    calls, weights, models = [0], {}, []

    def validate(self, model):
        calls[0] += 1
        return Validation(VALS[calls[0] - 1])

    real = lm_mod.train_loop

    def spy(model, *a, **k):
        models.append(model)
        return real(model, *a, **k)

    monkeypatch.setattr(lm_mod.LMTask, "validate", validate)
    monkeypatch.setattr(lm_mod, "train_loop", spy)

    def on_step(step, stop_at=None):
        weights[step] = {k: v.detach().clone() for k, v in models[-1].state_dict().items()}
        if step == stop_at:
            raise Interrupt

    return calls, weights, on_step


def _same(state: dict, model: torch.nn.Module) -> bool:
    got = model.state_dict()
    return all(torch.equal(state[k], got[k]) for k in state)


def _run(tmp_path, out, on_step, resume=False):
    text = write_text(tmp_path / "t.txt", 120)
    d = LMDataOptions(train=str(text), seq_len=8, batch_size=2, max_eval_tokens=50)
    cfg = TrainConfig(steps=6, eval_every=1, patience=2, checkpoint_every=3, warmup=0, lr=1e-2)
    return train_lm(d, KW, cfg, out, quiet=True, resume=resume, on_step=on_step)


def test_model_holds_the_best_weights_and_model_last_the_last(tmp_path, scripted):
    _, weights, on_step = scripted
    res = _run(tmp_path, tmp_path / "a", on_step)
    assert res["stopped"] == "early_stopping" and res["steps"] == 4 and res["best_step"] == 2
    assert not torch.equal(weights[2]["tok_emb.weight"], weights[4]["tok_emb.weight"])
    out = tmp_path / "a"
    assert _same(weights[2], from_pretrained(out / "model"))
    assert _same(weights[4], from_pretrained(out / "model-last"))
    model, tok, _ = load_model(out)  # what gpam eval / generate load by default
    assert _same(weights[2], model) and (out / "model-last" / "tokenizer.json").is_file()
    summary = json.loads((out / "train.json").read_text())
    assert summary["model_step"] == 2 and "best_weights" not in summary
    assert "model/ = the best validation weights (step 2" in (out / "report.md").read_text()
    # only the best weights the last checkpoint names are kept
    assert sorted(p.name for p in (out / "checkpoints").glob("best-*")) == ["best-00000002"]


def test_the_best_weights_survive_a_kill_and_resume(tmp_path, scripted):
    calls, weights, on_step = scripted
    _run(tmp_path, tmp_path / "a", on_step)
    straight = {
        k: v.clone() for k, v in from_pretrained(tmp_path / "a" / "model").state_dict().items()
    }
    calls[0] = 0
    with pytest.raises(Interrupt):  # after step 3: checkpoint 3 names best step 2
        _run(tmp_path, tmp_path / "b", lambda s: on_step(s, stop_at=3))
    calls[0] = 3  # the resumed run validates from step 4 on
    res = _run(tmp_path, tmp_path / "b", on_step, resume=True)
    assert res["steps"] == 4 and res["best_step"] == 2
    assert _same(straight, from_pretrained(tmp_path / "b" / "model"))


def test_without_early_stopping_model_holds_the_last_weights(tmp_path):
    text = write_text(tmp_path / "t.txt", 120)
    d = LMDataOptions(train=str(text), seq_len=8, batch_size=2, max_eval_tokens=50)
    res = train_lm(d, KW, TrainConfig(steps=2, warmup=0, eval_every=1), tmp_path / "o",
                   quiet=True)  # fmt: skip
    assert res["model_step"] == 2 and not (tmp_path / "o" / "model-last").exists()
    assert not list((tmp_path / "o" / "checkpoints").glob("best-*"))


def test_patience_given_only_on_resume_keeps_the_last_weights(tmp_path, scripted):
    """Steps trained without early stopping kept no best copy: then model/ is the last step's."""
    _, weights, on_step = scripted
    text = write_text(tmp_path / "t.txt", 120)
    d = LMDataOptions(train=str(text), seq_len=8, batch_size=2, max_eval_tokens=50)
    cfg = TrainConfig(steps=2, warmup=0, eval_every=1)
    train_lm(d, KW, cfg, tmp_path / "o", quiet=True, on_step=on_step)  # validation 3.0, 2.0
    cfg = TrainConfig(steps=3, warmup=0, eval_every=1, patience=5)  # 2.5: step 2 stays best
    res = train_lm(d, KW, cfg, tmp_path / "o", quiet=True, resume=True, on_step=on_step)
    assert res["best_step"] == 2 and res["model_step"] == 3
    assert _same(weights[3], from_pretrained(tmp_path / "o" / "model"))
