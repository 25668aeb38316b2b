"""benchmarks/gpu_check.py: refuses without a GPU, and its --cpu smoke mode runs every check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gpam

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=240
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without GPU")
def test_refuses_without_gpu(tmp_path):
    proc = _run("--out", str(tmp_path / "x.json"))
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_cpu_smoke_mode_checks_every_variant(tmp_path):
    out = tmp_path / "smoke.json"
    proc = _run("--cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["failed"] == 0 and report["device"] == "cpu (smoke)"
    checked = {(c["what"], c["dtype"], c["causal"], c["kv_heads"]) for c in report["checks"]}
    for name in gpam.VARIANTS:
        for dtype in ("float32", "bfloat16"):
            for causal in (False, True):
                assert (name, dtype, causal, 4) in checked and (name, dtype, causal, 2) in checked
    assert all(c["output_error_over_tol"] <= 1 for c in report["checks"])
    timed = {t["method"] for t in report["timings"]}
    assert {"sdpa", "dagpam_1call", "dagpam_2call", *gpam.VARIANTS} <= timed
    _check_hot_paths(report)


def _check_hot_paths(report: dict) -> None:
    """The hot-path A/B sections (issue 19 item 6): medians, ratios, one verdict each, and the
    two sides of each pair computing the same thing."""
    hot = report["hot_paths"]
    fq = hot["fused_query"]
    assert fq["one_gemm_ms"] > 0 and fq["two_projections_ms"] > 0 and fq["max_abs_diff"] < 1e-5
    pairs = hot["pairs"]
    assert pairs["one_call_ms"] > 0 and pairs["two_calls_ms"] > 0
    assert pairs["max_abs_diff"] < 1e-5
    assert [g["attention"] for g in hot["gqa"]] == ["softmax", "dagpam"]
    assert all(g["kv_heads"] < g["heads"] and g["max_abs_diff"] < 1e-5 for g in hot["gqa"])
    assert all(g["expanded_over_enable_gqa"] > 0 for g in hot["gqa"])
    assert [c["attention"] for c in hot["compile"]] == ["softmax", "dagpam"]
    assert all(c["compiled_ms"] > 0 and c["compile_s"] > 0 for c in hot["compile"])
    assert all(c["loss_diff"] < 1e-5 for c in hot["compile"])
    fold = hot["fold"]
    assert fold["one_call_ms"] > 0 and fold["two_calls_ms"] > 0 and fold["max_abs_diff"] < 1e-5
    step = hot["decode_step"]
    assert step["step_ms"] > 0 and step["sdpa_paths_ms"] > 0 and step["max_abs_diff"] < 1e-5
    assert step["dtype"] == "float32"
    assert len(report["verdicts"]) == 8
    assert all(("faster" in v) or ("the same" in v) for v in report["verdicts"])
