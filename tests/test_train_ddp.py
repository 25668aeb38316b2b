"""`gpam train lm` under torchrun with 2 CPU processes (gloo): ranks stay in sync, rank 0 writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_torchrun_two_cpu_processes_agree(tmp_path, data_dir):
    text = tmp_path / "shakespeare.txt"
    text.write_text((data_dir / "tinyshakespeare" / "input.txt").read_text()[:20000])
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "gpam.cli.main", "train", "lm", "--train", str(text), "--d-model", "16",
        "--layers", "1", "--heads", "2", "--seq-len", "16", "--batch-size", "4", "--steps", "6",
        "--eval-every", "3", "--checkpoint-every", "3", "--max-eval-tokens", "300",
        "--dropout", "0.1", "--quiet", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    done = re.findall(r"done: 6 steps \(steps\), validation loss ([0-9.]+)", p.stdout)
    # every rank validates its own replica: equal losses mean the replicas stayed identical
    assert len(done) == 2 and done[0] == done[1], p.stdout
    res = json.loads((out / "train.json").read_text())
    assert res["world_size"] == 2
    assert res["tokens"] == 6 * 2 * 4 * 16  # steps x ranks x batch x seq_len (sharded data)
    assert f"{res['final_val_loss']:.4f}" == done[0]
    # one log line per logged step (rank 0 only writes)
    steps = [json.loads(r)["step"] for r in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))
    assert sorted(p.name for p in (out / "checkpoints").glob("ckpt-*")) == [
        "ckpt-00000003", "ckpt-00000006"
    ]  # fmt: skip
