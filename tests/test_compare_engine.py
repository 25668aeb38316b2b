"""`gpam compare` through the one training engine: perplexity parity with `gpam eval lm`,
saved models usable by `gpam generate`, SIGKILL mid-run then restart, re-run on changed
settings, named daGPAM settings in one grid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gen_data import write_text
from gpam.cli.main import main

TINY = ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("corpus")
    return write_text(tmp / "train.txt", 400, seed=0), write_text(tmp / "valid.txt", 60, seed=9)


def _compare_lm(train: Path, valid: Path, out: Path, *extra: str) -> list[str]:
    return ["compare", "lm", "--train", str(train), "--valid", str(valid), "--level", "word",
            "--seq-len", "12", "--batch-size", "4", "--steps", "6", "--eval-every", "2",
            "--seeds", "0", *TINY, "--out", str(out), *extra]  # fmt: skip


def test_compare_lm_perplexity_equals_eval_lm(corpus, tmp_path, capsys):
    """The perplexity compare reports for a saved model is the one `gpam eval lm` computes on
    the same validation text (same per-line <eos> encoding, windows and tokens)."""
    train, valid = corpus
    out = tmp_path / "c"
    argv = _compare_lm(train, valid, out, "--variants", "softmax,dagpam", "--save-models")
    assert main(argv) == 0
    doc = json.loads((out / "results.json").read_text())
    for key in ("softmax/seed=0", "dagpam/seed=0"):
        reported = doc["runs"][key]["final_metric"]
        model = out / "models" / key.replace("/", "_")
        assert main(["eval", "lm", "--model", str(model), "--text", str(valid),
                     "--out", str(tmp_path / "e")]) == 0  # fmt: skip
        ev = json.loads((tmp_path / "e" / "eval.json").read_text())
        assert abs(ev["perplexity"] - reported) / reported < 1e-4, (key, ev, reported)
        assert ev["tokens"] == doc["task"]["valid_tokens"] - 1  # the whole validation text
    capsys.readouterr()
    model = out / "models" / "dagpam_seed=0"
    assert main(["generate", "--model", str(model), "--prompt", "the cat",
                 "--max-new-tokens", "5", "--temperature", "0"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith("the cat")


KILL = textwrap.dedent(
    """
    import os, signal, sys
    import gpam.train.loop as loop
    from gpam.cli.main import main
    victim, kill_at = sys.argv[1], int(sys.argv[2])
    real = loop.train_loop
    def killing(model, task, tok, cfg, out, *a, **k):
        def on_step(step):
            if out.name == victim and step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        k["on_step"] = on_step
        return real(model, task, tok, cfg, out, *a, **k)
    loop.train_loop = killing
    sys.exit(main(sys.argv[3:]))
    """
)


@pytest.mark.slow
def test_compare_sigkill_mid_run_then_restart_matches_uninterrupted(corpus, tmp_path):
    train, valid = corpus
    script = tmp_path / "kill.py"
    script.write_text(KILL)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(out, victim="none", kill_at=0):
        argv = _compare_lm(train, valid, out, "--variants", "softmax,dagpam", "--dropout", "0.1")
        cmd = [sys.executable, str(script), victim, str(kill_at), *argv]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)

    straight = run(tmp_path / "a")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = run(tmp_path / "b", "dagpam_seed=0", 5)  # the second run, after its step-4 checkpoint
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    partial = json.loads((tmp_path / "b" / "results.json").read_text())
    assert list(partial["runs"]) == ["softmax/seed=0"]  # the first run finished and was recorded
    ck = tmp_path / "b" / "runs" / "dagpam_seed=0" / "checkpoints" / "latest.json"
    assert json.loads(ck.read_text())["path"] == "ckpt-00000004"
    again = run(tmp_path / "b")
    assert again.returncode == 0, again.stderr[-2000:]
    a = json.loads((tmp_path / "a" / "results.json").read_text())["runs"]
    b = json.loads((tmp_path / "b" / "results.json").read_text())["runs"]
    assert set(a) == set(b)
    for key in a:
        for field in ("final_metric", "final_loss", "steps", "rank_collapse", "run_hash"):
            assert a[key][field] == b[key][field], (key, field)
        losses = [(p["step"], p["train_loss"], p["val_loss"]) for p in a[key]["curve"]]
        assert losses == [(p["step"], p["train_loss"], p["val_loss"]) for p in b[key]["curve"]]


def test_finished_run_is_rerun_when_settings_change(corpus, tmp_path, monkeypatch):
    import gpam.compare.runner as runner

    calls = []
    real = runner.train_one

    def counting(config, kind, spec, run_dir, h):
        calls.append(spec.key)
        return real(config, kind, spec, run_dir, h)

    monkeypatch.setattr(runner, "train_one", counting)
    train, valid = corpus
    out = tmp_path / "c"
    base = _compare_lm(train, valid, out, "--variants", "softmax")
    assert main(base) == 0 and calls == ["softmax/seed=0"]
    assert main(base) == 0 and len(calls) == 1  # same settings: reused
    assert main([*base, "--lr", "0.01"]) == 0 and len(calls) == 2  # learning rate changed
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["train"]["lr"] == 0.01
    write_text(valid, 60, seed=10)  # the validation text changed: the data hash changes
    assert main([*base, "--lr", "0.01"]) == 0 and len(calls) == 3
    assert main([*base, "--lr", "0.01", "--weight-decay", "0.1"]) == 0 and len(calls) == 4


def test_named_dagpam_settings_in_one_grid(tmp_path, capsys):
    """fixed / learnable-per-head lambdas as separate named rows of one comparison."""
    out = tmp_path / "g"
    argv = ["compare", "synthetic", "--task", "copy", "--task-option", "length=3",
            "--variants", "softmax,dagpam-fixed=dagpam+lam_neg=0.5,"
            "dagpam-head=dagpam+learnable_lambda=true", "--seeds", "0", "--steps", "2",
            "--batch-size", "4", "--eval-batches", "1", *TINY, "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert set(runs) == {"softmax/seed=0", "dagpam-fixed/seed=0", "dagpam-head/seed=0"}
    assert runs["dagpam-head/seed=0"]["model_config"]["learnable_lambda"] is True
    assert runs["dagpam-fixed/seed=0"]["model_config"]["learnable_lambda"] is False
    assert main([*argv[:7], "softmax,dagpam+bogus=1", *argv[8:]]) == 2
    assert "unknown model option" in capsys.readouterr().err
