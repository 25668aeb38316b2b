"""Ctrl-C (SIGINT) or SIGTERM during `gpam train` writes a checkpoint of the step in progress
and exits 130 / 143; `--resume` says where it continues and ends bit-identical to an
uninterrupted run (issue 20 item 13)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gen_data import write_text
from gpam.train.checkpoint import latest_checkpoint


def argv(text, out, resume=False) -> list[str]:
    """`gpam train lm` on a tiny model: 8 steps, checkpoints every 4, 2 micro-batches, dropout."""
    return ["train", "lm", "--train", str(text), "--d-model", "16", "--layers", "1", "--heads",
            "2", "--seq-len", "16", "--batch-size", "4", "--max-eval-tokens", "400", "--steps",
            "8", "--warmup", "3", "--eval-every", "4", "--checkpoint-every", "4", "--log-every",
            "2", "--accum", "2", "--lr", "3e-3", "--dropout", "0.2", "--seed", "7", "--quiet",
            "--out", str(out)] + (["--resume"] if resume else [])  # fmt: skip


def signal_after(step_at: int, sig: int):
    """A ``train_loop`` wrapper that sends this process ``sig`` after optimiser step
    ``step_at``."""
    import gpam.train.lm as lm

    real = lm.train_loop

    def spy(*a, **k):
        def on_step(step):
            if step == step_at:
                os.kill(os.getpid(), sig)

        a = list(a)
        a[8] = on_step  # train_loop(model, task, tok, cfg, out, dist, dev, resume, on_step, ...)
        return real(*a, **k)

    return spy


# `gpam train lm` in a subprocess that sends itself the signal after step `at` (0: none)
SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[1])
    import gpam.train.lm as lm
    from gpam.cli.main import main
    from test_train_signals import argv, signal_after
    text, out, sig, at, resume = sys.argv[2:7]
    lm.train_loop = signal_after(int(at), int(sig))
    sys.exit(main(argv(text, out, resume == "1")))
    """
)


def _run(tmp_path, out, sig=signal.SIGINT, at=0, resume=False):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    text = write_text(tmp_path / "t.txt", 500)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(script), str(Path(__file__).parent), str(text), str(out),
           str(int(sig)), str(at), "1" if resume else "0"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)


def _log(out):
    rows = (out / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(r).items() if k not in ("elapsed", "wall")} for r in rows]


@pytest.mark.slow
def test_sigint_checkpoints_exits_130_and_resumes_bit_identical(tmp_path):
    straight = _run(tmp_path, tmp_path / "a")
    assert straight.returncode == 0, straight.stderr[-2000:]

    cut = _run(tmp_path, tmp_path / "b", signal.SIGINT, at=5)
    assert cut.returncode == 130, cut.stderr[-2000:]
    err = cut.stderr.strip().splitlines()[-1]
    assert "interrupted by SIGINT after step 6; checkpoint" in err, err
    assert "a resumed run continues from it" in err
    # the step in progress when the signal came (6) is checkpointed, not only the periodic 4
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "ckpt-00000006"
    assert not (tmp_path / "b" / "model").exists()

    resumed = _run(tmp_path, tmp_path / "b", resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from step 6" in resumed.stdout
    a = json.loads((tmp_path / "a" / "train.json").read_text())
    b = json.loads((tmp_path / "b" / "train.json").read_text())
    assert b["final_val_loss"] == a["final_val_loss"]  # bit-identical, not merely close
    wa, wb = (load_file(str(tmp_path / r / "model" / "model.safetensors")) for r in "ab")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _log(tmp_path / "a") == _log(tmp_path / "b")


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_143(tmp_path):
    # a subprocess: were SIGTERM not caught, it would end the test run itself
    cut = _run(tmp_path, tmp_path / "c", signal.SIGTERM, at=1)
    assert cut.returncode == 143, cut.stderr[-2000:]
    err = cut.stderr.strip().splitlines()[-1]
    assert err.startswith("gpam train: interrupted by SIGTERM after step 2"), err
    assert latest_checkpoint(tmp_path / "c" / "checkpoints").name == "ckpt-00000002"


def test_signal_flag_catches_once_then_restores_the_handler():
    from gpam.train.interrupt import SignalFlag, TrainingInterrupted

    before = signal.getsignal(signal.SIGINT)
    with SignalFlag() as flag:
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pytest.fail("the first SIGINT was not caught")
        assert flag.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C stops at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
    e = TrainingInterrupted(signal.SIGTERM, 5, None)
    assert isinstance(e, KeyboardInterrupt) and e.exit_code == 143
