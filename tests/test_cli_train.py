"""End-to-end commands on tiny models, on generated text (always) and slices of the real corpora
(extra, with GPAM_DATA_DIR): `gpam train lm|nmt`, `gpam eval lm|nmt`, `gpam generate`,
`gpam translate`, and their errors."""

from __future__ import annotations

import gzip
import io
import json
import math

import pytest

from gen_data import text_lines, write_pairs
from gpam.cli.main import main

TINY = ["--d-model", "16", "--layers", "1", "--heads", "2", "--quiet"]


@pytest.fixture(scope="module", params=["generated", "tinyshakespeare"])
def lm_run(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("lm")
    text = tmp / "corpus.txt"
    if request.param == "generated":
        text.write_text("ROMEO: " + "\n".join(text_lines(900)) + "\n")
    else:
        data_dir = request.getfixturevalue("data_dir")
        text.write_text((data_dir / "tinyshakespeare" / "input.txt").read_text()[:30000])
    out = tmp / "run"
    code = main(["train", "lm", "--train", str(text), *TINY, "--seq-len", "16",
                 "--batch-size", "4", "--steps", "6", "--eval-every", "3",
                 "--max-eval-tokens", "500", "--attention", "dagpam", "--lam-neg", "0.3",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    return text, out


@pytest.fixture(scope="module", params=["generated", "multi30k"])
def nmt_run(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("nmt")
    files = {}
    if request.param == "generated":
        sets = {}
        for split, n, seed in (("train", 400, 0), ("val", 40, 1), ("test_2016_flickr", 12, 2)):
            sets[split] = write_pairs(tmp / split, n_train=n, n_valid=1, seed=seed)
        read = {
            (split, lang): sets[split][f"train_{side}"].read_text().splitlines(keepends=True)
            for split in sets
            for lang, side in (("de", "src"), ("en", "tgt"))
        }
    else:
        m = request.getfixturevalue("data_dir") / "multi30k"
        read = {}
        for split, n in (("train", 400), ("val", 40), ("test_2016_flickr", 12)):
            for lang in ("de", "en"):
                with gzip.open(m / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
                    read[split, lang] = [next(f) for _ in range(n)]
    for (split, lang), lines in read.items():
        files[split, lang] = tmp / f"{split}.{lang}.gz"
        files[split, lang].write_bytes(gzip.compress("".join(lines).encode()))
    out = tmp / "run"
    code = main(["train", "nmt", "--train-src", str(files["train", "de"]),
                 "--train-tgt", str(files["train", "en"]), "--valid-src", str(files["val", "de"]),
                 "--valid-tgt", str(files["val", "en"]), "--tokenizer", "word", *TINY,
                 "--steps", "4", "--eval-every", "2", "--max-tokens", "600", "--warmup", "2",
                 "--attention", "softmax", "--out", str(out)])  # fmt: skip
    assert code == 0
    return files, out


def test_train_lm_outputs(lm_run, capsys):
    _, out = lm_run
    for name in (
        "train.json",
        "report.md",
        "loss.png",
        "log.jsonl",
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer.json",
        "checkpoints/latest.json",
    ):
        assert (out / name).is_file(), name
    res = json.loads((out / "train.json").read_text())
    assert res["steps"] == 6 and res["model_config"]["lam_neg"] == 0.3
    assert res["parameters"]["extra"] > 0  # daGPAM's negative queries
    assert res["final_val_bpc"] == pytest.approx(res["final_val_loss"] / math.log(2))
    assert "bits/char" in (out / "report.md").read_text()


def test_eval_lm_matches_training_validation(lm_run, tmp_path, capsys):
    text, out = lm_run
    res = json.loads((out / "train.json").read_text())
    assert (
        main(
            [
                "eval",
                "lm",
                "--model",
                str(out),
                "--text",
                str(text),
                "--last-fraction",
                "0.1",
                "--max-tokens",
                "500",
                "--out",
                str(tmp_path / "e"),
            ]
        )
        == 0
    )
    ev = json.loads((tmp_path / "e" / "eval.json").read_text())
    # the same held-out 10 %, the same windows: the same loss as the training run's validation
    assert ev["loss"] == pytest.approx(res["final_val_loss"], rel=1e-6)
    assert ev["bits_per_char"] == pytest.approx(ev["loss"] / math.log(2))
    assert ev["perplexity"] == pytest.approx(math.exp(ev["loss"]))
    assert "bits/char" in capsys.readouterr().out


def test_generate(lm_run, capsys):
    _, out = lm_run
    assert (
        main(
            [
                "generate",
                "--model",
                str(out),
                "--prompt",
                "ROMEO",
                "--max-new-tokens",
                "10",
                "--temperature",
                "0",
                "--num-samples",
                "2",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    samples = [s for s in text.split("\n--- sample ")]
    assert len(samples) == 2
    body = text.split("--- sample 1 ---\n")[1].split("\n--- sample 2")[0]
    assert body.startswith("ROMEO") and len(body) <= 15


def test_generate_past_the_context(lm_run, capsys):
    # the model's max_len is its --seq-len 16: the default 200 new tokens (and the README's
    # --max-new-tokens 200) go on with a sliding window instead of exiting 2
    _, out = lm_run
    assert main(["generate", "--model", str(out)]) == 0
    assert capsys.readouterr().out.strip()
    args = ["generate", "--model", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "200"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("ROMEO:")


def test_train_nmt_eval_and_translate(nmt_run, tmp_path, capsys, monkeypatch):
    import sacrebleu

    files, out = nmt_run
    res = json.loads((out / "train.json").read_text())
    assert res["task"] == "nmt" and res["steps"] == 4 and res["label_smoothing"] == 0.1
    ev_out = tmp_path / "e"
    assert main(["eval", "nmt", "--model", str(out), "--src",
                 str(files["test_2016_flickr", "de"]), "--ref",
                 str(files["test_2016_flickr", "en"]), "--beam-size", "2", "--max-len", "12",
                 "--out", str(ev_out)]) == 0  # fmt: skip
    ev = json.loads((ev_out / "eval.json").read_text())
    hyps = (ev_out / "hypotheses.txt").read_text().splitlines()
    with gzip.open(files["test_2016_flickr", "en"], "rt") as f:
        refs = [ln.strip() for ln in f]
    assert ev["sentences"] == len(hyps) == 12
    assert ev["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert ev["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    capsys.readouterr()
    with gzip.open(files["test_2016_flickr", "de"], "rt") as f:
        src = [next(f).strip() for _ in range(2)]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{src[0]}\n\n{src[1]}\n"))
    assert main(["translate", "--model", str(out), "--beam-size", "2", "--max-len", "12"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[:3] == [hyps[0], "", hyps[1]]  # same beam search as `eval nmt`, blank kept


def test_one_line_errors(tmp_path, capsys):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("x\ny\nz\n")
    b.write_text("X\nY\n")
    args = [
        "train",
        "nmt",
        "--train-src",
        str(a),
        "--train-tgt",
        str(b),
        "--valid-src",
        str(a),
        "--valid-tgt",
        str(a),
        "--out",
        str(tmp_path / "o"),
        *TINY,
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpam train nmt: error: sentence-pair files are not aligned")
    assert "\n" not in err
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello\nwor\xffld\n" * 50)
    assert main(["train", "lm", "--train", str(bad), "--out", str(tmp_path / "o2"), *TINY]) == 2
    assert "not valid UTF-8 (the first: line 2," in capsys.readouterr().err
    assert main(["train", "lm", "--out", str(tmp_path / "o3"), *TINY]) == 2
    assert "--train FILE" in capsys.readouterr().err
    assert main(["eval", "lm", "--model", str(tmp_path / "none"), "--text", str(a)]) == 2
    assert "model folder not found" in capsys.readouterr().err
    assert main(["train", "lm", "--train", str(a), "--resume", "--out", str(tmp_path / "o4"),
                 *TINY]) == 2  # fmt: skip
    assert "no checkpoint" in capsys.readouterr().err


def test_every_option_has_help(capsys):
    from gpam.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("train", "eval", "generate", "translate"):
        p = sub.choices[name]
        parsers = [p]
        for a in p._actions:
            if a.dest == "task":
                parsers = list(a.choices.values())
        for q in parsers:
            for action in q._actions:
                if action.option_strings and action.dest != "help":
                    assert action.help, f"{name} {action.option_strings} has no help"
