"""Whole-model benchmark: throughput rows, FLOP-predicted overheads, fixed-length decoding."""

from __future__ import annotations

from gpam.bench.models import ModelBenchConfig, run_model_bench


def test_model_bench_tiny_models():
    cfg = ModelBenchConfig(
        vocab=97,
        d_model=32,
        n_layers=2,
        n_heads=2,
        lm_batch=2,
        lm_seq=16,
        nmt_batch=2,
        src_len=6,
        decode_len=5,
        beam_size=2,
        repeats=1,
        warmup=0,
    )
    rows = run_model_bench(cfg, progress=False)
    assert len(rows) == 6
    by = {(r["workload"].split(" (")[0], r["attention"]): r for r in rows}
    for workload in ("LM training", "NMT greedy decoding", "NMT beam decoding"):
        soft, dag = by[(workload, "softmax")], by[(workload, "dagpam")]
        assert soft["overhead"] == 0.0 and soft["flop_overhead"] == 0.0
        assert dag["flops"] > soft["flops"] > 0  # the negative query projection costs FLOPs
        assert dag["throughput"] > 0
    for kind in ("NMT greedy decoding", "NMT beam decoding"):
        assert by[(kind, "dagpam")]["mean_output_tokens"] == cfg.decode_len  # eos suppressed
