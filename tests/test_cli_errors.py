"""Careless input to `gpam` (issue 20 item 15): one-line errors that name the file or option,
nothing silently dropped or overwritten, no folder left behind by a refused run."""

from __future__ import annotations

import pytest

from gpam.cli.main import main

TINY = ["--d-model", "8", "--layers", "1", "--heads", "1", "--seq-len", "4", "--batch-size", "2"]
TINY += ["--steps", "1", "--eval-every", "1", "--quiet", "--threads", "1"]
TRAIN_RESULT = {"steps": 1, "stopped": "steps", "final_val_loss": 1.0}


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "usage:" not in err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "lm", "--steps", "0"],
        ["train", "nmt", "--batch-size", "x"],
        ["compare", "synthetic", "--seeds", "a"],
        ["analyze", "phase", "--threads", "0"],
        ["bench", "--no-such-option"],
        ["train"],
    ],
)
def test_parse_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    _one_line_error(capsys, "error:", "--help")


def test_steps_zero_names_the_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "lm", "--steps", "0"])
    _one_line_error(capsys, "gpam train lm: error: argument --steps", ">= 1, got 0")


def test_library_errors_name_the_full_command(tmp_path, capsys):
    assert main(["train", "lm", "--train", str(tmp_path / "none.txt"), "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "gpam train lm: error:", "none.txt")


@pytest.fixture
def bad_text(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"hello world\nbad \xff line\n" + b"some more text here\n" * 20 + b"\xfe\n")
    return p


def test_non_utf8_error_is_cli_wording_and_counts(bad_text, tmp_path, capsys):
    assert main(["train", "lm", "--train", str(bad_text), *TINY, "--out", str(tmp_path / "o")]) == 2
    err = _one_line_error(capsys, "bad.txt", "2 lines are not valid UTF-8", "line 2")
    assert err.index("--skip-bad-lines") < err.index("skip_bad=True")  # the CLI's words first
    assert not (tmp_path / "o").exists()


def test_skip_bad_lines_says_how_many_it_skipped(bad_text, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["train", "lm", "--train", str(bad_text), *TINY, "--skip-bad-lines",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "2 non-UTF-8 skipped" in capsys.readouterr().out
    assert main(["eval", "lm", "--model", str(out), "--text", str(bad_text), "--skip-bad-lines",
                 "--out", str(tmp_path / "e")]) == 0  # fmt: skip
    assert "skipped 2 non-UTF-8 line(s)" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"\n\n   \n"])
def test_empty_corpus_error_names_the_file(content, tmp_path, capsys):
    p = tmp_path / "empty_corpus.txt"
    p.write_bytes(content)
    for tok in ("char", "word"):
        argv = ["train", "lm", "--train", str(p), "--tokenizer", tok, *TINY]
        assert main([*argv, "--out", str(tmp_path / tok)]) == 2
        _one_line_error(capsys, "empty_corpus.txt", "no text")


def test_too_short_validation_text_names_it(tmp_path, capsys):
    train, valid = tmp_path / "t.txt", tmp_path / "tiny_valid.txt"
    train.write_text("some training text\n" * 20)
    valid.write_text("a")
    argv = ["train", "lm", "--train", str(train), "--valid", str(valid), *TINY]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "validation text", "tiny_valid.txt", "too short")


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "synthetic", "--variants", "softmax,,dagpam"],
        ["analyze", "rank-collapse", "--variants", "softmax,"],
        ["analyze", "phase", "--lam-neg", "0.5,,1"],
    ],
)
def test_empty_list_entries_are_errors(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    _one_line_error(capsys, "empty entry")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ("bogus", "bogus"),
        ("dagpam+bogus_option=1", "bogus_option"),
        ("dagpam+lam_neg=-1", "lam_neg"),
    ],
)
def test_bad_variants_entry_leaves_no_folder(entry, needle, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "synthetic", "--variants", f"softmax,{entry}", "--seeds", "0"]
    assert main([*argv, "--steps", "1", "--quiet", "--out", str(out)]) == 2
    _one_line_error(capsys, "gpam compare synthetic: error:", needle)
    assert not out.exists()


@pytest.mark.parametrize("task", ["lm", "nmt"])
def test_train_refuses_a_used_out_without_resume(task, tmp_path, monkeypatch, capsys):
    import gpam.train.lm as lm
    import gpam.train.nmt as nmt

    seen = []
    fake = lambda *a, **k: seen.append(k["resume"]) or TRAIN_RESULT  # noqa: E731
    monkeypatch.setattr(lm, "train_lm", fake)
    monkeypatch.setattr(nmt, "train_nmt", fake)
    out = tmp_path / "run"
    base = ["train", task, "--out", str(out)]
    assert main(base) == 0  # a new folder
    out.mkdir()
    assert main(base) == 0  # an empty folder
    (out / "train.json").write_text("{}")
    assert main(base) == 2
    _one_line_error(capsys, f"--out {out} already holds a run", "--resume", "--overwrite")
    assert main([*base, "--resume"]) == 0 and (out / "train.json").exists()
    (out / "checkpoints").mkdir()  # an earlier run's checkpoint must not outlive --overwrite
    assert main([*base, "--overwrite"]) == 0 and not out.exists()
    assert seen == [False, False, True, False]


def test_overwrite_removes_only_a_gpam_run(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["train", "lm", "--out", str(out), "--overwrite"]) == 2
    _one_line_error(capsys, "--overwrite replaces a gpam run folder", str(out))
    assert (out / "notes.txt").read_text() == "keep me"
