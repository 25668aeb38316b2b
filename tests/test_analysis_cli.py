"""`gpam analyze ...` end to end on tiny settings, and its errors."""

from __future__ import annotations

import json

import pytest

from gpam.cli.main import main

STACK = ["--depth", "2", "--length", "5", "--width", "8", "--heads", "2", "--trials", "1"]


def test_rank_collapse_cli_writes_outputs(tmp_path, capsys):
    out = tmp_path / "rc"
    argv = ["analyze", "rank-collapse", "--variants", "softmax,dagpam", "--lam-neg", "1"]
    assert main([*argv, *STACK, "--architectures", "attention", "--out", str(out)]) == 0
    data = json.loads((out / "rank_collapse.json").read_text())
    assert [r["label"] for r in data["results"]] == ["softmax", "dagpam lam_neg=1"]
    assert (out / "rank_collapse_attention.png").exists() and (out / "report.md").exists()
    assert "rank_collapse.json" in capsys.readouterr().out


def test_faithfulness_cli_writes_outputs(tmp_path):
    out = tmp_path / "fa"
    argv = ["analyze", "faithfulness", "--lam-neg-values", "0,1", "--lam-pos-values", "2"]
    assert main([*argv, *STACK, "--out", str(out)]) == 0
    data = json.loads((out / "faithfulness.json").read_text())
    assert [s["name"] for s in data["sweeps"]] == ["lam_neg", "lam_pos"]
    assert (out / "faithfulness_lam_neg.png").exists() and (
        out / "faithfulness_lam_pos.png"
    ).exists()


def test_gradients_cli_writes_outputs(tmp_path):
    out = tmp_path / "gr"
    argv = ["analyze", "gradients", "--variants", "softmax,cog", "--steps", "2", "--batch", "2"]
    argv += ["--width", "8", "--heads", "2", "--layers", "1", "--gamma", "0.5", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "gradients.json").read_text())
    assert [r["label"] for r in data["runs"]] == ["softmax", "cog"]
    assert data["config"]["gamma"] == 0.5
    assert (out / "gradients_loss.png").exists() and (out / "report.md").exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["analyze", "rank-collapse", "--depth", "0"], "--depth"),
        (["analyze", "rank-collapse", "--lam-neg", "a,b"], "--lam-neg"),
        (["analyze", "faithfulness", "--architecture", "mlp"], "--architecture"),
        (["analyze", "gradients", "--gamma", "0"], "--gamma"),
        (["analyze", "nothing"], "nothing"),
    ],
)
def test_bad_options_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "error:" in err[-1] and needle in err[-1]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["analyze", "rank-collapse", "--variants", "softmax,bogus"], "bogus"),
        (["analyze", "rank-collapse", "--width", "10", "--heads", "4"], "width"),
        (["analyze", "gradients", "--variants", "dagpam", "--lam-neg", "-1"], "lam_neg"),
    ],
)
def test_bad_values_give_one_line_error(argv, needle, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith(f"gpam analyze {argv[1]}: error:") and needle in err[0]
    )
    assert not (tmp_path / "x").exists()


def test_rank_collapse_on_a_checkpoint(tmp_path):
    import torch

    from gpam.models import LMConfig, TransformerLM, save_pretrained

    torch.manual_seed(0)
    cfg = LMConfig(vocab_size=12, d_model=8, n_layers=2, n_heads=2, max_len=8, lam_neg=1.0)
    save_pretrained(TransformerLM(cfg), tmp_path / "ckpt")
    out = tmp_path / "rc"
    argv = ["analyze", "rank-collapse", "--checkpoint", str(tmp_path / "ckpt"), "--length", "6"]
    assert main([*argv, "--trials", "2", "--batch", "2", "--out", str(out)]) == 0
    data = json.loads((out / "rank_collapse.json").read_text())
    assert data["config"]["depth"] == 2 and data["config"]["width"] == 8
    assert [r["architecture"] for r in data["results"]] == ["attention", "attention_skip", "preln"]
    for r in data["results"]:
        assert r["variant"] == "dagpam" and r["lam_neg"] == 1.0
        assert len(r["residual_fro_mean"]) == 3 and r["seeds"] == [0, 1]
    assert "checkpoint" in (out / "report.md").read_text()
    assert main([*argv[:3], str(tmp_path / "missing"), "--out", str(out)]) == 2
