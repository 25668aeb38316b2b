"""gpam.bench: methods agree with the reference, memory measurement sees L x L, reports, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from gpam.bench import all_methods, get_method, run_bench
from gpam.bench.core import CoreBenchConfig, run_core_bench
from gpam.bench.measure import count_flops, peak_memory_bytes, summarize
from gpam.cli.main import main
from gpam.functional import dagpam_attention

CPU = torch.device("cpu")


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("name", ["dagpam", "dagpam_naive", "dagpam_1call"])
def test_dagpam_methods_equal_functional(name, causal):
    torch.manual_seed(0)
    q, qn, k, v = (torch.randn(2, 4, 37, 16, dtype=torch.float64) for _ in range(4))
    want = dagpam_attention(q, qn, k, v, lam_neg=0.3, is_causal=causal)
    got = get_method(name)(q, qn, k, v, causal, 0.3)
    torch.testing.assert_close(got, want)


def test_every_method_runs_forward_and_backward():
    torch.manual_seed(0)
    xs = [torch.randn(1, 2, 20, 16, requires_grad=True) for _ in range(4)]
    for name in all_methods():
        if name == "dagpam_fused":
            continue  # CUDA only (interpreter tests live in test_kernels_triton.py)
        out = get_method(name)(*xs, True, 0.5)
        out.sum().backward()
        assert torch.isfinite(out).all(), name
    with pytest.raises(ValueError, match="method"):
        get_method("nope")


def test_peak_memory_sees_quadratic_matrix_and_linear_sdpa():
    torch.manual_seed(0)

    def peak(name, length):
        xs = [torch.randn(1, 2, length, 16, requires_grad=True) for _ in range(4)]
        return peak_memory_bytes(lambda: get_method(name)(*xs, True, 0.5).sum().backward(), CPU)

    one_matrix = 2 * 1024 * 1024 * 4  # (B, H, L, L) float32 at L = 1024
    naive = peak("dagpam_naive", 1024)
    assert naive >= 2 * one_matrix  # two score maps at least
    assert naive > 10 * peak("dagpam_naive", 256)  # 4x the length: ~16x the bytes
    for name in ("sdpa", "dagpam"):
        # (SDPA's CPU kernel sizes its work tiles by L up to a cap, so compare from L = 1024)
        small, large = peak(name, 1024), peak(name, 4096)
        assert 0 < small < one_matrix / 2, name
        assert large < 5 * small, name  # 4x the length: ~4x the bytes (linear plus a constant)
    # an allocation that is freed before the end still counts as peak
    assert peak_memory_bytes(lambda: torch.empty(1_000_000).sum(), CPU) >= 4_000_000


def test_summarize_pairs_rounds_and_flops_count_sdpa():
    s = summarize({"sdpa": [1.0, 2.0, 4.0], "x": [2.0, 4.0, 8.0]}, "sdpa")
    assert s["x"]["ratio"] == 2.0 and s["sdpa"]["ratio"] == 1.0 and s["x"]["median_s"] == 4.0
    q = torch.randn(1, 2, 32, 16)
    flops = count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q))
    assert flops == 4 * 2 * 32 * 32 * 16


def test_config_validation_names_the_argument():
    with pytest.raises(ValueError, match="dtypes"):
        CoreBenchConfig(dtypes=("float8",)).validate()
    with pytest.raises(ValueError, match="sdpa"):
        CoreBenchConfig(methods=("dagpam",)).validate()
    with pytest.raises(ValueError, match="lengths"):
        CoreBenchConfig(lengths=(0,)).validate()
    with pytest.raises(ValueError, match=r"kv_heads must be a positive divisor of heads \(8\)"):
        CoreBenchConfig(kv_heads=3).validate()
    with pytest.raises(ValueError, match="memory_kv_heads"):
        CoreBenchConfig(memory_heads=2, memory_kv_heads=4).validate()


def test_run_core_bench_rows_and_ratios():
    cfg = CoreBenchConfig(
        lengths=(32,),
        batch=1,
        heads=2,
        head_dim=16,
        passes=("fwdbwd",),
        methods=("sdpa", "dagpam", "dagpam_naive"),
        repeats=2,
        warmup=0,
        memory_lengths=(64, 128),
    )
    res = run_core_bench(cfg, progress=False)
    assert {r["method"] for r in res["time"]} == {"sdpa", "dagpam", "dagpam_naive"}
    assert all(r["median_s"] > 0 for r in res["time"])
    assert [r["ratio"] for r in res["time"] if r["method"] == "sdpa"] == [1.0]
    naive = {r["L"]: r["peak_bytes"] for r in res["memory"] if r["method"] == "dagpam_naive"}
    assert naive[128] > 2.5 * naive[64]  # quadratic growth is visible
    json.dumps(res)


def test_cli_writes_json_report_and_plots(tmp_path, capsys):
    out = tmp_path / "b"
    argv = "bench --lengths 32 --batch 1 --heads 2 --head-dim 16 --methods sdpa,dagpam "
    argv += "--repeats 1 --warmup 0 --memory-lengths 64 --clock cpu --quiet --out"
    rc = main([*argv.split(), str(out)])
    assert rc == 0
    data = json.loads((out / "bench.json").read_text())
    assert len(data["time"]) == 4 and len(data["memory"]) == 2
    assert data["config"]["kv_heads"] is None and {r["kv_heads"] for r in data["time"]} == {2}
    assert data["env"]["clock"] == "cpu" and data["config"]["clock"] == "cpu"
    report = (out / "report.md").read_text()
    assert "| dagpam |" in report.replace("| 32 | dagpam |", "| dagpam |")
    assert (out / "core_time.png").stat().st_size > 0 and (out / "core_memory.png").exists()


def test_cli_bad_input_is_a_one_line_error(tmp_path, capsys):
    rc = main(["bench", "--methods", "sdpa,bogus", "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "method must be one of" in capsys.readouterr().err
    with pytest.raises(ValueError, match="threads"):
        run_bench(tmp_path / "y", threads=0)


def test_grouped_kv_heads_memory_is_not_copied_per_query_head():
    """With 8 query heads over 2 K/V heads every method gets K/V of 2 heads, and softmax's peak
    is SDPA's (no expanded K/V copies): a copy of K and V to 8 heads would add 2 x 6 heads of
    L x D floats, more than the whole difference between 2 and 8 K/V heads measured here."""
    base = {"lengths": (), "heads": 8, "head_dim": 16, "memory_lengths": (256,)}
    peaks = {}
    for hkv in (2, 8):
        cfg = CoreBenchConfig(
            **base, memory_heads=8, memory_kv_heads=hkv, methods=("sdpa", "softmax", "dagpam")
        )
        rows = run_core_bench(cfg, progress=False)["memory"]
        assert {r["kv_heads"] for r in rows} == {hkv}
        peaks[hkv] = {r["method"]: r["peak_bytes"] for r in rows}
    assert peaks[2]["softmax"] <= peaks[2]["sdpa"] * 1.05
    for m in ("sdpa", "softmax", "dagpam"):
        assert peaks[2][m] < peaks[8][m]  # fewer K/V heads: smaller gradients, no copies


def test_model_bench_times_decoding_with_the_configured_clock(monkeypatch):
    """``--clock cpu`` reaches every workload's timing loop (it once reached LM training only)."""
    import gpam.bench.models as models

    clocks = []
    real = models.interleaved_times

    def spy(fns, **kw):
        clocks.append(kw.get("clock"))
        return real(fns, **kw)

    monkeypatch.setattr(models, "interleaved_times", spy)
    cfg = models.ModelBenchConfig(
        vocab=32, d_model=16, n_layers=2, n_heads=2, lm_batch=1, lm_seq=8, nmt_batch=2,
        src_len=4, decode_len=3, beam_size=2, repeats=1, warmup=0, clock="cpu",
    )  # fmt: skip
    rows = models.run_model_bench(cfg, progress=False)
    assert clocks == ["cpu", "cpu", "cpu"] and len(rows) == 6


def test_cli_grouped_kv_heads_reach_rows_and_report(tmp_path):
    out = tmp_path / "g"
    argv = "bench --lengths 32 --batch 1 --heads 4 --kv-heads 2 --head-dim 16 --methods "
    argv += "sdpa,dagpam --passes fwd --repeats 1 --warmup 0 --memory-lengths 64 --memory-heads 4 "
    argv += "--memory-kv-heads 1 --quiet --out"
    assert main([*argv.split(), str(out)]) == 0
    data = json.loads((out / "bench.json").read_text())
    assert {r["kv_heads"] for r in data["time"]} == {2}
    assert {r["kv_heads"] for r in data["memory"]} == {1}
    report = (out / "report.md").read_text()
    assert "H=4, Hkv=2 (key/value heads)" in report and "H=4, Hkv=1 (key/value heads)" in report
