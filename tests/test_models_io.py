"""save_pretrained / from_pretrained: atomic files, right class, tied weights kept tied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gpam.models import (
    LMConfig,
    Seq2SeqConfig,
    Seq2SeqTransformer,
    TransformerLM,
    from_pretrained,
    save_pretrained,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest (and suffer least from a busy machine) on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _perturb(model: torch.nn.Module) -> None:
    """Move every weight away from its initial value so a fresh init cannot pass the test."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))


def test_lm_round_trip_keeps_weights_and_ties(tmp_path: Path) -> None:
    cfg = LMConfig(29, d_model=32, n_layers=2, n_heads=4, positions="rotary",
                   learnable_lambda=True, dropout=0.0)  # fmt: skip
    lm = TransformerLM(cfg).eval()
    _perturb(lm)
    save_pretrained(lm, tmp_path / "lm")
    files = sorted(p.name for p in (tmp_path / "lm").iterdir())
    assert files == ["config.json", "model.safetensors"]  # no temporary files left behind
    meta = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert meta["model_type"] == "lm" and meta["vocab_size"] == 29
    stored = load_file(str(tmp_path / "lm" / "model.safetensors"))
    assert "tok_emb.weight" in stored and "lm_head.weight" not in stored  # one copy
    back = from_pretrained(tmp_path / "lm")
    assert isinstance(back, TransformerLM) and back.config == cfg and not back.training
    assert back.lm_head.weight is back.tok_emb.weight
    x = torch.randint(0, 29, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(back(x), lm(x))
    for (k, a), b in zip(lm.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("tie", ["none", "decoder", "all"])
def test_seq2seq_round_trip(tmp_path: Path, tie: str) -> None:
    cfg = Seq2SeqConfig(31, d_model=32, n_encoder_layers=1, n_decoder_layers=2, n_heads=4,
                        tie_embeddings=tie, cross_attention="diff", dropout=0.0)  # fmt: skip
    model = Seq2SeqTransformer(cfg).eval()
    _perturb(model)
    save_pretrained(model, tmp_path)
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert ("out_proj.weight" in stored) == (tie == "none")
    assert ("src_emb.weight" in stored) == (tie != "all")
    back = from_pretrained(tmp_path)
    assert isinstance(back, Seq2SeqTransformer) and back.config == cfg
    assert (back.out_proj.weight is back.tgt_emb.weight) == (tie != "none")
    assert (back.src_emb.weight is back.tgt_emb.weight) == (tie == "all")
    src, tgt = torch.randint(0, 31, (2, 5)), torch.randint(0, 31, (2, 4))
    with torch.no_grad():
        torch.testing.assert_close(back(src, tgt), model(src, tgt))


def test_from_pretrained_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_pretrained(tmp_path)
    lm = TransformerLM(LMConfig(11, d_model=16, n_layers=1, n_heads=2))
    save_pretrained(lm, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "gan"}))
    with pytest.raises(ValueError, match="model_type"):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "n_layers": 2}))
    with pytest.raises(ValueError, match="missing"):
        from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="TransformerLM"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path / "x")


def test_from_pretrained_accepts_a_run_folder(tmp_path) -> None:
    from gpam.models import LMConfig, TransformerLM, from_pretrained, save_pretrained

    model = TransformerLM(LMConfig(vocab_size=11, d_model=16, n_layers=1, n_heads=2, max_len=8))
    save_pretrained(model, tmp_path / "run" / "model")  # the layout `gpam train` writes
    loaded = from_pretrained(tmp_path / "run")
    x = torch.randint(0, 11, (2, 5))
    torch.testing.assert_close(loaded(x), model.eval()(x))
