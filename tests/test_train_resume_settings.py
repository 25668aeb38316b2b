"""Resume checks the settings it continues with: a changed model, data or optimiser setting is
refused with one line naming it (checkpoint -> now) before any weight is loaded; a changed step
count, budget or frequency is applied and recorded in train.json (issue 20 items 1 and 2)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gen_data import write_text
from gpam.cli.main import main
from gpam.train.lm import LMDataOptions, train_lm
from gpam.train.loop import TrainConfig

KW = dict(d_model=16, n_layers=1, n_heads=2, lam_neg=0.5)
CFG = dict(steps=2, warmup=0, eval_every=2, checkpoint_every=2)


@pytest.fixture
def run(tmp_path):
    """A finished 2-step LM run in ``tmp_path / "o"``: (data options, out)."""
    text = write_text(tmp_path / "t.txt", 120)
    d = LMDataOptions(train=str(text), seq_len=8, batch_size=2, max_eval_tokens=50)
    train_lm(d, KW, TrainConfig(**CFG), tmp_path / "o", quiet=True)
    return d, tmp_path / "o"


def test_every_train_setting_is_either_fixed_or_free():
    from gpam.train.resume import FIXED_TRAIN_FIELDS, FREE_TRAIN_FIELDS

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(FIXED_TRAIN_FIELDS) | set(FREE_TRAIN_FIELDS) == names
    assert not set(FIXED_TRAIN_FIELDS) & set(FREE_TRAIN_FIELDS)


@pytest.mark.parametrize(
    "model, data, train, named",
    [
        ({"lam_neg": 0.7}, {}, {}, ["model.lam_neg 0.5 -> 0.7"]),
        ({"d_model": 32}, {}, {}, ["model.d_model 16 -> 32"]),
        ({}, {"seq_len": 16}, {}, ["data.seq_len 8 -> 16", "model.max_len 8 -> 16"]),
        ({}, {"batch_size": 3}, {}, ["data.batch_size 2 -> 3"]),
        ({}, {}, {"weight_decay": 0.1}, ["train.weight_decay 0.01 -> 0.1"]),
        ({}, {}, {"beta2": 0.95}, ["train.beta2 0.98 -> 0.95"]),
        ({}, {}, {"lr": 0.01, "warmup": 1}, ["train.lr 0.001 -> 0.01", "train.warmup 0 -> 1"]),
    ],
)
def test_resume_refuses_a_changed_setting(run, model, data, train, named):
    d, out = run
    with pytest.raises(ValueError, match="trained with other settings") as e:
        train_lm(dataclasses.replace(d, **data), {**KW, **model}, TrainConfig(**{**CFG, **train}),
                 out, quiet=True, resume=True)  # fmt: skip
    msg = str(e.value)
    assert "\n" not in msg and all(n in msg for n in named), msg


def test_resume_refuses_other_text(run, tmp_path):
    """The file paths may change (a moved corpus), the tokens may not."""
    d, out = run
    moved = tmp_path / "moved.txt"
    moved.write_text((tmp_path / "t.txt").read_text())
    cfg = TrainConfig(**{**CFG, "steps": 3})
    res = train_lm(dataclasses.replace(d, train=str(moved)), KW, cfg, out, quiet=True, resume=True)
    assert res["steps"] == 3
    assert res["resumes"][0]["changed"]["data.train"] == [d.train, str(moved)]
    write_text(moved, 120, seed=5)
    with pytest.raises(ValueError, match="data.fingerprint"):
        train_lm(dataclasses.replace(d, train=str(moved)), KW, TrainConfig(**{**CFG, "steps": 4}),
                 out, quiet=True, resume=True)  # fmt: skip


def test_resume_with_more_steps_and_another_budget_is_applied_and_recorded(run, capsys):
    d, out = run
    cfg = TrainConfig(**{**CFG, "steps": 4, "eval_every": 1})
    res = train_lm(d, KW, cfg, out, quiet=True, resume=True)
    assert res["steps"] == 4 and res["stopped"] == "steps"
    assert "resuming from step 2 (changed: train.eval_every 2 -> 1; train.steps 2 -> 4)" in (
        capsys.readouterr().out
    )
    summary = json.loads((out / "train.json").read_text())
    changed = {"train.eval_every": [2, 1], "train.steps": [2, 4]}
    assert summary["resumes"] == [{"step": 2, "changed": changed}]
    assert summary["train_config"]["steps"] == 4
    assert "resumed at step 2: train.eval_every 2 -> 1, train.steps 2 -> 4" in (
        (out / "report.md").read_text()
    )
    rows = [json.loads(r) for r in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_loss" in r] == [2, 3, 4]


def test_a_longer_time_budget_continues_a_run_the_budget_stopped(tmp_path):
    text = write_text(tmp_path / "t.txt", 120)
    d = LMDataOptions(train=str(text), seq_len=8, batch_size=2, max_eval_tokens=50)
    budget = dict(steps=100, time_budget=2, budget_clock="steps", warmup=0, eval_every=2)
    res = train_lm(d, KW, TrainConfig(**budget), tmp_path / "o", quiet=True)
    assert res["steps"] == 2 and res["stopped"] == "time_budget"
    cfg = TrainConfig(**{**budget, "time_budget": 3})
    res = train_lm(d, KW, cfg, tmp_path / "o", quiet=True, resume=True)
    assert res["steps"] == 3 and res["stopped"] == "time_budget"
    assert res["resumes"] == [{"step": 2, "changed": {"train.time_budget": [2, 3]}}]


def _strip_settings(out):
    """Make the latest checkpoint look like one written before settings were recorded."""
    path = out / "checkpoints" / "ckpt-00000002" / "trainer_state.json"
    state = json.loads(path.read_text())
    del state["trainer"]["settings"]
    path.write_text(json.dumps(state))


def test_an_older_checkpoint_still_refuses_another_weight_decay_or_size(run):
    """Without a settings record the optimiser's own parameter groups tell the weight decay and
    betas (which loading them would silently restore), and a model of another size fails with
    one line instead of torch's size-mismatch report."""
    d, out = run
    _strip_settings(out)
    with pytest.raises(ValueError, match=r"train.beta1 0.9 -> 0.8; train.weight_decay 0.01 -> 0.2"):
        train_lm(d, KW, TrainConfig(**CFG, weight_decay=0.2, beta1=0.8), out, quiet=True,
                 resume=True)  # fmt: skip
    with pytest.raises(ValueError, match="do not fit this model.*size mismatch") as e:
        train_lm(d, {**KW, "d_model": 32}, TrainConfig(**CFG), out, quiet=True, resume=True)
    assert "\n" not in str(e.value)
    res = train_lm(d, KW, TrainConfig(**{**CFG, "steps": 3}), out, quiet=True, resume=True)
    assert res["steps"] == 3


def test_cli_resume_with_another_setting_is_one_line_and_exit_2(tmp_path, capsys):
    text = write_text(tmp_path / "t.txt", 120)
    base = ["train", "lm", "--train", str(text), "--d-model", "16", "--layers", "1",
            "--heads", "2", "--seq-len", "8", "--batch-size", "2", "--max-eval-tokens", "50",
            "--steps", "2", "--eval-every", "2", "--warmup", "0", "--quiet",
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(base) == 0
    capsys.readouterr()
    for extra, named in (
        (["--lam-neg", "0.7"], "model.lam_neg 0.5 -> 0.7"),
        (["--d-model", "32"], "model.d_model 16 -> 32"),
        (["--seq-len", "16"], "data.seq_len 8 -> 16"),
        (["--weight-decay", "0.1"], "train.weight_decay 0.01 -> 0.1"),
    ):
        assert main([*base, *extra, "--resume"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("gpam train lm: error: resume:") and "\n" not in err, err
        assert named in err
    assert main([*base, "--steps", "3", "--resume"]) == 0
    assert "resuming from step 2 (changed: train.steps 2 -> 3)" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "train.json").read_text())["steps"] == 3
