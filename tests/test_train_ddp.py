"""DDP under torchrun with 2 CPU processes (gloo), on generated text (no GPAM_DATA_DIR):
ranks stay in sync, rank 0 decides the time budget, a SIGKILLed run resumes to the same result,
NMT token counts are summed over ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from gen_data import write_pairs, write_text

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, signal, sys, time
    import torch
    torch.set_num_threads(1)
    import gpam.train.loop as loop
    from gpam.train.loop import TrainConfig
    mode, data, out, kill_at, resume = sys.argv[1:6]
    kill_at, resume, rank = int(kill_at), resume == "1", int(os.environ["RANK"])
    if mode == "skew" and rank == 1:  # rank 1's clock runs a million times too fast
        loop.CLOCKS["wall"] = lambda: 1e6 * time.perf_counter()
    if mode == "early":  # rank 0's validation improves every time, rank 1's gets worse
        import gpam.train.lm as lm_mod
        calls = []
        def scripted(self, model):
            calls.append(1)
            return loop.Validation(5.0 - len(calls) if rank == 0 else 1.0 + len(calls))
        lm_mod.LMTask.validate = scripted
    captured = {}
    real_loop = loop.train_loop
    def spy(model, *a, **k):
        captured["model"] = model
        return real_loop(model, *a, **k)
    def on_step(step):
        if step == kill_at and rank == 0:
            os.kill(os.getpid(), signal.SIGKILL)
    if mode == "nmt":
        import gpam.train.nmt as nmt
        nmt.train_loop = spy
        d = nmt.NMTDataOptions(train_src=data + "/train.src", train_tgt=data + "/train.tgt",
                               valid_src=data + "/valid.src", valid_tgt=data + "/valid.tgt",
                               tokenizer="word", max_tokens=300)
        cfg = TrainConfig(steps=4, warmup=1, eval_every=4, checkpoint_every=4, seed=3)
        kw = dict(d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1)
        res = nmt.train_nmt(d, kw, cfg, out, resume=resume, quiet=True, on_step=on_step)
    else:
        import gpam.train.lm as lm
        lm.train_loop = spy
        d = lm.LMDataOptions(train=data, seq_len=16, batch_size=4, max_eval_tokens=400)
        if mode == "skew":
            cfg = TrainConfig(steps=6, time_budget=1e4, budget_clock="wall", warmup=2,
                              eval_every=3, checkpoint_every=3, lr=3e-3, seed=5)
        elif mode == "early":
            cfg = TrainConfig(steps=4, patience=1, warmup=1, eval_every=1, checkpoint_every=4,
                              seed=5)
        else:  # a deterministic budget: 10 steps' worth on the "steps" clock, 1000 as a cap
            cfg = TrainConfig(steps=1000, time_budget=10, budget_clock="steps", warmup=2,
                              eval_every=4, checkpoint_every=4, log_every=1, lr=3e-3, seed=5)
        kw = dict(d_model=16, n_layers=1, n_heads=2, dropout=0.2, attention="dagpam")
        res = lm.train_lm(d, kw, cfg, out, resume=resume, quiet=True, on_step=on_step)
    flat = torch.cat([p.detach().flatten() for p in captured["model"].parameters()])
    print("RESULT", json.dumps({"rank": rank, "steps": res["steps"], "stopped": res["stopped"],
          "val": res["final_val_loss"], "tokens": res["tokens"],
          "params": hashlib.sha256(flat.numpy().tobytes()).hexdigest()}), flush=True)
    """
)


def _torchrun(tmp_path, mode, data, out, kill_at=0, resume=False):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(script), mode, str(data), str(out), str(kill_at), "1" if resume else "0",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _results(proc) -> dict[int, dict]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(ln.split(" ", 1)[1]) for ln in proc.stdout.splitlines() if "RESULT" in ln]
    got = {r["rank"]: r for r in rows}
    assert set(got) == {0, 1}, proc.stdout
    return got


@pytest.mark.slow
def test_ddp_time_budget_sigkill_resume_matches_uninterrupted(tmp_path):
    text = write_text(tmp_path / "text.txt", 300)
    straight = _results(_torchrun(tmp_path, "lm", text, tmp_path / "a"))
    # both ranks: the same parameters, stopped by the budget after 10 steps
    assert straight[0]["params"] == straight[1]["params"]
    assert straight[0]["steps"] == straight[1]["steps"] == 10
    assert straight[0]["stopped"] == "time_budget"

    killed = _torchrun(tmp_path, "lm", text, tmp_path / "b", kill_at=7)
    assert killed.returncode != 0 and "RESULT" not in killed.stdout
    ck = json.loads((tmp_path / "b" / "checkpoints" / "latest.json").read_text())
    assert ck["path"] == "ckpt-00000004"  # killed after step 7: the last checkpoint is step 4
    state = json.loads(
        (tmp_path / "b" / "checkpoints" / ck["path"] / "trainer_state.json").read_text()
    )
    assert len(state["rng"]) == 2  # each rank's RNG state (dropout is seeded by rank)
    assert state["trainer"]["schedule"]["time_budget"] == 10
    resumed = _results(_torchrun(tmp_path, "lm", text, tmp_path / "b", resume=True))
    assert resumed[0]["params"] == resumed[1]["params"] == straight[0]["params"]
    assert resumed[0]["val"] == straight[0]["val"]  # bit-identical, not merely close
    assert resumed[0]["tokens"] == straight[0]["tokens"] == 10 * 2 * 4 * 16

    # the logged learning rates of the resumed run continue the same schedule
    def lrs(run):
        rows = (tmp_path / run / "log.jsonl").read_text().splitlines()
        return [(r["step"], r["lr"]) for r in map(json.loads, rows)]

    assert lrs("a") == lrs("b") and len(lrs("a")) == 10


@pytest.mark.slow
def test_ddp_rank0_clock_decides(tmp_path):
    """Rank 1's clock says the budget is long gone; rank 0's does not: rank 0 decides, so both
    ranks run all 6 steps with one learning rate and end with identical parameters."""
    text = write_text(tmp_path / "text.txt", 300)
    res = _results(_torchrun(tmp_path, "skew", text, tmp_path / "s"))
    assert res[0]["steps"] == res[1]["steps"] == 6
    assert res[0]["stopped"] == res[1]["stopped"] == "steps"
    assert res[0]["params"] == res[1]["params"]
    assert res[0]["val"] == res[1]["val"]
    logged = (tmp_path / "s" / "log.jsonl").read_text()
    assert sorted(json.loads(r)["step"] for r in logged.splitlines()) == [3, 6]


@pytest.mark.slow
def test_ddp_rank0_decides_early_stopping(tmp_path):
    """Rank 1's own validation would stop it after one evaluation (patience 1); rank 0's keeps
    improving. Rank 0's result reaches every rank: both train all 4 steps, in sync."""
    text = write_text(tmp_path / "text.txt", 200)
    res = _results(_torchrun(tmp_path, "early", text, tmp_path / "e"))
    assert res[0]["stopped"] == res[1]["stopped"] == "steps"
    assert res[0]["steps"] == res[1]["steps"] == 4
    assert res[0]["val"] == res[1]["val"] == 1.0 and res[0]["params"] == res[1]["params"]


@pytest.mark.slow
def test_ddp_nmt_token_counts_are_summed_over_ranks(tmp_path):
    """Length-bucketed NMT batches differ between ranks: the token count is the sum over both
    ranks' batches, not rank 0's count times two."""
    import torch

    from gpam.data.pairs import encode_pairs, read_pairs
    from gpam.data.tokenizer import PAD_ID, train_tokenizer
    from gpam.train.distributed import DistInfo
    from gpam.train.nmt import NMTDataOptions, NMTTask

    files = write_pairs(tmp_path / "pairs", n_train=120, n_valid=10)
    res = _results(_torchrun(tmp_path, "nmt", tmp_path / "pairs", tmp_path / "n"))
    assert res[0]["params"] == res[1]["params"] and res[0]["tokens"] == res[1]["tokens"]
    tr, _ = read_pairs(files["train_src"], files["train_tgt"])
    tok = train_tokenizer("word", [s for s, _ in tr] + [t for _, t in tr], None, 1)
    ids, _ = encode_pairs(tr, tok, tok, 128)
    per_rank = []
    for rank in (0, 1):  # the 4 batches each rank drew (the same batching as the run)
        task = NMTTask(ids, ids, NMTDataOptions(max_tokens=300), 3, DistInfo(rank, 2),
                       torch.device("cpu"), 0.0)  # fmt: skip
        pos, n = {}, 0
        for _ in range(4):
            b, pos = task.batch(pos)
            n += int((b["tgt_out"] != PAD_ID).sum())
        per_rank.append(n)
    assert per_rank[0] != per_rank[1]  # the test means something only if they differ
    assert res[0]["tokens"] == sum(per_rank)
