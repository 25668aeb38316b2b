"""Fine-tuning a converted tiny GPT-2 on generated text (and, as an extra, Tiny Shakespeare from
$GPAM_DATA_DIR)."""

from __future__ import annotations

import json

import pytest
import torch

from gen_data import text_lines

tf = pytest.importorskip("transformers")
import gpam.hf as gh  # noqa: E402


@pytest.fixture(scope="module", params=["generated", "tinyshakespeare"])
def text(request) -> str:
    if request.param == "generated":
        return "\n".join(text_lines(1500)) + "\n"
    data_dir = request.getfixturevalue("data_dir")
    return (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:60_000]


def _tiny_gpt2(vocab_size: int) -> tf.GPT2LMHeadModel:
    cfg = tf.GPT2Config(vocab_size=vocab_size, n_positions=128, n_embd=64, n_layer=2, n_head=4)
    return tf.GPT2LMHeadModel(cfg)


def test_char_tokenizer_roundtrip(text) -> None:
    tok = gh.char_tokenizer(text)
    ids = tok(text[:500])["input_ids"]
    assert len(ids) == 500 and 0 not in ids
    assert tok.decode(ids) == text[:500]


def test_finetune_lowers_validation_loss(text) -> None:
    tok = gh.char_tokenizer(text)
    ids = torch.tensor(tok(text)["input_ids"])
    cut = int(0.9 * ids.numel())
    model = gh.convert(_tiny_gpt2(len(tok)), lam_neg=0.2)
    res = gh.finetune(
        model,
        ids[:cut],
        ids[cut:],
        steps=15,
        batch_size=8,
        seq_len=32,
        lr=1e-2,
        eval_batches=2,
        progress=False,
    )
    assert res["val_loss_after"] < res["val_loss_before"] - 0.3
    lams = [v for heads in res["lambdas"].values() for v in heads]
    assert min(lams) >= 0.0 and any(abs(v - 0.2) > 1e-4 for v in lams)  # lambda was trained


def test_finetune_text_saves_a_loadable_model(text, tmp_path) -> None:
    tok = gh.char_tokenizer(text)
    _tiny_gpt2(len(tok)).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    (tmp_path / "train.txt").write_text(text[:8000], encoding="utf-8")
    out = tmp_path / "out"
    res = gh.finetune_text(
        tmp_path / "base",
        tmp_path / "train.txt",
        out,
        lam_neg=0.1,
        neg_query="negate",
        steps=3,
        batch_size=4,
        seq_len=32,
        eval_batches=1,
        progress=False,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["gpam"]["lam_neg"] == 0.1 and len(metrics["train_losses"]) == 3
    assert res["val_loss_after"] == metrics["val_loss_after"]
    loaded = gh.load_converted(out)
    assert gh.lambdas(loaded) == res["lambdas"]
    # a converted directory is loaded as converted and can be fine-tuned again
    res2 = gh.finetune_text(
        out,
        tmp_path / "train.txt",
        tmp_path / "out2",
        steps=1,
        batch_size=4,
        seq_len=32,
        eval_batches=1,
        progress=False,
    )
    assert abs(res2["val_loss_before"] - res["val_loss_after"]) < 1e-5


def test_finetune_bad_input(tmp_path) -> None:
    model = gh.convert(_tiny_gpt2(20))
    ids = torch.randint(0, 20, (200,))
    with pytest.raises(ValueError, match="steps"):
        gh.finetune(model, ids, ids, steps=0)
    with pytest.raises(ValueError, match="trainable"):
        gh.finetune(model, ids, ids, trainable="some")
    with pytest.raises(ValueError, match="val_ids"):
        gh.finetune(model, ids, ids[:10], seq_len=32)
    with pytest.raises(TypeError, match="train_ids"):
        gh.finetune(model, ids.float(), ids)
    with pytest.raises(ValueError, match="model_dir"):
        gh.finetune_text(tmp_path, tmp_path / "x.txt", tmp_path / "o")


def test_cli_train_lm_hf_model(text, tmp_path, capsys) -> None:
    from gpam.cli.main import main

    tok = gh.char_tokenizer(text)
    _tiny_gpt2(len(tok)).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    (tmp_path / "train.txt").write_text(text[:8000], encoding="utf-8")
    args = ["train", "lm", "--hf-model", str(tmp_path / "base"), "--train"]
    args += [str(tmp_path / "train.txt"), "--lam-neg", "0.3", "--learnable-lambda", "--steps", "2"]
    args += ["--batch-size", "4", "--seq-len", "32", "--quiet", "--out", str(tmp_path / "ft")]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert metrics["gpam"]["lam_neg"] == 0.3 and len(metrics["train_losses"]) == 2
    assert "validation loss" in capsys.readouterr().out
    # --hf-model without --train is a one-line error, exit status 2
    assert main(["train", "lm", "--hf-model", str(tmp_path / "base")]) == 2
