"""Checkpoints and exact resume: a run killed with SIGKILL and resumed ends where an
uninterrupted run with the same seed ends; schedule and state round trips."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from gen_data import write_pairs, write_text
from gpam.train.checkpoint import (
    latest_checkpoint,
    load_optimizer_state,
    optimizer_state,
    rng_state,
    set_rng_state,
)
from gpam.train.loop import TrainConfig
from gpam.train.schedule import lr_factor

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    import torch
    torch.set_num_threads(1)
    from gpam.train.lm import LMDataOptions, train_lm
    from gpam.train.loop import TrainConfig
    text, out, kill_at, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    d = LMDataOptions(train=text, seq_len=16, batch_size=4, max_eval_tokens=400)
    cfg = TrainConfig(steps=12, warmup=3, eval_every=4, checkpoint_every=4, log_every=2,
                      accum=2, lr=3e-3, seed=7)
    model = dict(d_model=16, n_layers=1, n_heads=2, dropout=0.2, attention="dagpam")
    def on_step(step):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    res = train_lm(d, model, cfg, out, resume=resume, quiet=True, on_step=on_step)
    print("RESULT", json.dumps(res["final_val_loss"]))
    """
)


def _run(script, text, out, kill_at, resume):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(script), str(text), str(out), str(kill_at), "1" if resume else "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )


def _val(proc):
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line.split(" ", 1)[1])


def _corpus(source, tmp_path, request):
    """Generated text (always runs) or, as an extra, Tiny Shakespeare from GPAM_DATA_DIR."""
    if source == "generated":
        return write_text(tmp_path / "generated.txt", 500)
    data_dir = request.getfixturevalue("data_dir")
    text = tmp_path / "shakespeare.txt"
    text.write_text((data_dir / "tinyshakespeare" / "input.txt").read_text()[:20000])
    return text


@pytest.mark.slow
@pytest.mark.parametrize("source", ["generated", "tinyshakespeare"])
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, source, request):
    text = _corpus(source, tmp_path, request)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    straight = _val(_run(script, text, tmp_path / "a", 0, False))

    killed = _run(script, text, tmp_path / "b", 10, False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ck = latest_checkpoint(tmp_path / "b" / "checkpoints")
    assert ck is not None and ck.name == "ckpt-00000008"  # killed after step 10, past ckpt 8
    assert not (tmp_path / "b" / "model").exists()
    resumed = _val(_run(script, text, tmp_path / "b", 0, True))
    assert resumed == straight  # bit-identical, not merely close

    # the log of the resumed run equals the uninterrupted log (steps 9-10 rewritten, no dups)
    log_a = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    log_b = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    strip = [
        {k: v for k, v in json.loads(r).items() if k not in ("elapsed", "wall")} for r in log_a
    ]
    assert strip == [
        {k: v for k, v in json.loads(r).items() if k not in ("elapsed", "wall")} for r in log_b
    ]
    # the finished run holds the model, its tokenizer and safetensors state: no pickle files
    files = {p.name for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "trainer_state.json",
        "trainer_state.safetensors",
        "train.json",
        "report.md",
        "loss.png",
    } <= files
    assert not [f for f in files if f.endswith((".pt", ".pth", ".pkl", ".bin"))]


def test_optimizer_and_rng_state_round_trip():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
        opt.zero_grad()
    tensors, meta = optimizer_state(opt)
    meta = json.loads(json.dumps(meta))  # must survive JSON
    opt2 = torch.optim.AdamW(model.parameters(), lr=5.0)
    load_optimizer_state(opt2, tensors, meta)
    for s1, s2 in zip(opt.state.values(), opt2.state.values()):
        for k in s1:
            assert torch.equal(torch.as_tensor(s1[k]), torch.as_tensor(s2[k]))
    assert opt2.param_groups[0]["lr"] == 1e-2

    t, m = rng_state()
    m = json.loads(json.dumps(m))
    a = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    set_rng_state(t, m)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def _adam_after_steps(model: torch.nn.Module) -> torch.optim.Optimizer:
    from gpam.train.params import parameter_groups

    opt = torch.optim.AdamW(parameter_groups(model, 0.01), lr=1e-2)
    for _ in range(2):
        model(torch.randn(2, 5, 16), is_causal=True).sum().backward()
        opt.step()
        opt.zero_grad()
    return opt


def test_optimizer_state_lands_on_the_parameter_of_the_same_name():
    """An optimiser state saved with another parameter order (gpam 0.1 registered a daGPAM
    layer's neg_weight / lambdas before its projections, without the ``variant.`` level) is
    matched to the parameters by name, not by position."""
    import gpam
    from gpam.train.params import parameter_groups

    torch.manual_seed(0)
    model = gpam.MultiheadAttention(16, 4, attention="dagpam", learnable_lambda=True)
    opt = _adam_after_steps(model)
    tensors, meta = optimizer_state(opt)
    meta = json.loads(json.dumps(meta))
    # rewrite it as gpam 0.1 saved it: variant parameters first in their group, older names
    old_tensors, old_scalars = {}, {}
    for g in meta["param_groups"]:
        order = sorted(range(len(g["names"])), key=lambda i: "variant." not in g["names"][i])
        ids = [g["params"][i] for i in order]
        new_ids = sorted(g["params"])
        for old_id, new_id in zip(ids, new_ids):
            for k, v in tensors.items():
                if k.startswith(f"opt/{old_id}/"):
                    old_tensors[f"opt/{new_id}/" + k.split("/", 2)[2]] = v
            for k, v in meta["scalars"].items():
                if k.startswith(f"{old_id}/"):
                    old_scalars[f"{new_id}/" + k.split("/", 1)[1]] = v
        g["names"] = [g["names"][i].replace("variant.", "") for i in order]
        g["params"] = new_ids
    meta["scalars"] = old_scalars
    opt2 = torch.optim.AdamW(parameter_groups(model, 0.01), lr=5.0)
    load_optimizer_state(opt2, old_tensors, meta)
    for p in model.parameters():
        for k, v in opt.state[p].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(opt2.state[p][k]))


def test_optimizer_state_of_other_parameters_is_refused():
    import gpam
    from gpam.train.params import parameter_groups

    torch.manual_seed(0)
    opt = _adam_after_steps(gpam.MultiheadAttention(16, 4, attention="dagpam"))
    tensors, meta = optimizer_state(opt)
    other = gpam.MultiheadAttention(16, 4, attention="diff")
    opt2 = torch.optim.AdamW(parameter_groups(other, 0.01), lr=1e-2)
    with pytest.raises(ValueError, match="other parameters than this model"):
        load_optimizer_state(opt2, tensors, json.loads(json.dumps(meta)))


def test_schedules():
    inv = [lr_factor("inverse_sqrt", s, 10, 0.0) for s in (1, 5, 10, 40, 160)]
    assert inv[:3] == [0.1, 0.5, 1.0] and inv[3] == pytest.approx(0.5) and inv[4] == 0.25
    assert lr_factor("cosine", 10, 10, 0.0) == 1.0
    assert lr_factor("cosine", 500, 10, 1.0, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor("cosine", 500, 10, 0.5, min_ratio=0.0) == pytest.approx(0.5)
    assert lr_factor("constant", 3, 10, 0.9) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_factor("linear", 1, 1, 0.0)


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")
    with pytest.raises(ValueError, match="time_budget"):
        TrainConfig(time_budget=-1.0)
    with pytest.raises(ValueError, match="budget_clock"):
        TrainConfig(budget_clock="gpu")
    with pytest.raises(ValueError, match="weight_decay"):
        TrainConfig(weight_decay=-0.1)


def test_resume_refuses_a_different_schedule(tmp_path):
    """The schedule a run was checkpointed with is part of its state: resuming with another
    budget clock or warmup is refused (it would silently change the learning-rate curve; a
    longer run is allowed: tests/test_train_resume_settings.py)."""
    from gpam.train.lm import LMDataOptions, train_lm

    text = write_text(tmp_path / "t.txt", 120)
    d = LMDataOptions(train=str(text), seq_len=8, batch_size=2, max_eval_tokens=50)
    kw = dict(d_model=16, n_layers=1, n_heads=2)
    cfg = TrainConfig(steps=2, time_budget=5, budget_clock="steps", warmup=0, eval_every=2)
    res = train_lm(d, kw, cfg, tmp_path / "o", quiet=True)
    assert res["steps"] == 2 and res["elapsed_s"] == 2.0  # the "steps" clock: one per step
    other = TrainConfig(steps=4, time_budget=5, budget_clock="wall", warmup=1, eval_every=2)
    with pytest.raises(ValueError, match="train.budget_clock 'steps' -> 'wall'; train.warmup 0"):
        train_lm(d, kw, other, tmp_path / "o", quiet=True, resume=True)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["generated", "multi30k"])
def test_nmt_resume_restores_data_position(tmp_path, source, request):
    """Interrupted at step 5 (checkpoint at 4) and resumed: same result as a straight run,
    across an epoch boundary of the length-bucketed batches."""
    import gzip

    from gpam.train.nmt import NMTDataOptions, train_nmt

    files = {}
    if source == "generated":
        pairs = write_pairs(tmp_path / "pairs", n_train=60, n_valid=5)
        files = {"de": pairs["train_src"], "en": pairs["train_tgt"]}
    else:
        m = request.getfixturevalue("data_dir") / "multi30k"
        for lang in ("de", "en"):
            with gzip.open(m / f"val.{lang}.gz", "rt", encoding="utf-8") as f:
                lines = [next(f) for _ in range(60)]
            files[lang] = tmp_path / f"v.{lang}"
            files[lang].write_text("".join(lines))
    d = NMTDataOptions(train_src=str(files["de"]), train_tgt=str(files["en"]),
                       valid_src=str(files["de"]), valid_tgt=str(files["en"]),
                       tokenizer="word", max_tokens=500, valid_limit=20)  # fmt: skip
    kw = dict(d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, dropout=0.1)
    cfg = TrainConfig(steps=9, warmup=2, eval_every=3, checkpoint_every=4, seed=3)

    class Interrupt(Exception):
        pass

    def stop_at_5(step):
        if step == 5:
            raise Interrupt

    straight = train_nmt(d, kw, cfg, tmp_path / "a", quiet=True)
    with pytest.raises(Interrupt):
        train_nmt(d, kw, cfg, tmp_path / "b", quiet=True, on_step=stop_at_5)
    resumed = train_nmt(d, kw, cfg, tmp_path / "b", quiet=True, resume=True)
    state = json.loads((tmp_path / "a" / "checkpoints" / "ckpt-00000009" /
                        "trainer_state.json").read_text())["trainer"]  # fmt: skip
    assert state["pos"]["epoch"] >= 1  # the 9 steps crossed an epoch boundary
    assert resumed["final_val_loss"] == straight["final_val_loss"]


def test_warmup_fraction_follows_the_budget():
    """Compare's warmup is a fraction of the progress (steps or budget used), so a time budget
    warms up over its first 10 % however large the step cap."""
    from gpam.compare.settings import TrainSettings

    cfg = TrainSettings(steps=100_000, time_budget=10.0, budget_clock="steps").train_config(0)
    assert cfg.warmup_fraction == 0.1 and cfg.warmup == 0
    with pytest.raises(ValueError, match="warmup_fraction"):
        TrainConfig(warmup_fraction=1.5)
