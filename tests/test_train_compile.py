"""Issue 19 item 5: ``TrainConfig.compile`` / ``--compile``: the model is compiled and warmed up
before the first step (the time reported as ``compile_s``), and the run trains like an eager one."""

from __future__ import annotations

import pytest
import torch

from gpam.train.distributed import DistInfo
from gpam.train.loop import TrainConfig, train_loop
from test_train_nosync import Task, _lm


def _run(compile_: bool, dropout: float = 0.0):
    cfg = TrainConfig(steps=6, warmup=0, log_every=3, eval_every=6, checkpoint_every=100,
                      compile=compile_)  # fmt: skip
    res = train_loop(_lm(dropout=dropout), Task(), None, cfg, None, DistInfo(),
                     torch.device("cpu"), quiet=True)  # fmt: skip
    return res, [r["loss"] for r in res["history"] if "loss" in r]


def test_compile_warms_up_off_the_record(monkeypatch):
    """With a stand-in for torch.compile: one call, a warm-up that changes neither the data
    position nor the dropout stream (the losses equal an eager run's bit for bit), compile_s
    reported; eager runs report None."""
    calls = []

    def fake_compile(model, **kw):
        calls.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    eager, want = _run(False, dropout=0.1)
    res, got = _run(True, dropout=0.1)
    assert len(calls) == 1 and got == want
    assert eager["compile_s"] is None and res["compile_s"] > 0
    assert res["train_config"]["compile"] is True


@pytest.mark.slow
def test_compiled_run_matches_eager(monkeypatch):
    """A real torch.compile (dynamo, eager backend: no C++ compiler, quick) gives the eager
    run's losses to round-off."""
    orig = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: orig(m, backend="eager"))
    _, want = _run(False)
    res, got = _run(True)
    assert got == pytest.approx(want, rel=1e-6) and res["compile_s"] > 0


def test_compile_failure_is_one_clear_error(monkeypatch):
    def broken(model, **kw):
        class Boom(torch.nn.Module):
            def forward(self, *a):
                raise RuntimeError("no C++ compiler found\nlong trace ...")

        return Boom()

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(RuntimeError, match=r"^--compile: torch.compile failed: no C\+\+ compiler"):
        _run(True)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "lm", "--train", "x.txt", "--compile"],
        ["compare", "synthetic", "--task", "recall", "--compile"],
        ["bench", "--models", "--compile"],
    ],
)
def test_compile_flag_parses_and_reaches_the_settings(argv):
    from gpam.cli.main import build_parser

    a = build_parser().parse_args(argv)
    assert a.compile is True and build_parser().parse_args(argv[:-1]).compile is False
    if argv[0] == "train":
        from gpam._namespace import dataclass_from

        assert dataclass_from(TrainConfig, a).compile is True
    if argv[0] == "compare":
        from gpam.compare.cli_entry import settings_from_args

        assert settings_from_args(a).train_config(0).compile is True


def test_bench_models_compile_reports_the_compile_time(monkeypatch):
    """``ModelBenchConfig(compile=True)``: the LM training rows carry ``compile_s`` (and the
    table says it); FLOPs are still counted on the eager model."""
    from gpam.bench.models import ModelBenchConfig, run_model_bench
    from gpam.bench.report import model_table

    calls = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: calls.append(m) or m)
    cfg = ModelBenchConfig(vocab=97, d_model=32, n_layers=2, n_heads=2, lm_batch=2, lm_seq=16,
                           nmt_batch=2, src_len=6, decode_len=5, beam_size=2, repeats=1,
                           warmup=0, compile=True)  # fmt: skip
    rows = run_model_bench(cfg, progress=False)
    lm = [r for r in rows if r["workload"].startswith("LM training")]
    assert len(calls) == 2 and all(r["compile_s"] > 0 and r["flops"] > 0 for r in lm)
    assert all(r.get("compile_s") is None for r in rows if r not in lm)
    assert "compiled in" in model_table(rows)
