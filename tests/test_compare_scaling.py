"""`gpam compare ... --sizes`: the grid at every size, training FLOPs per run, the scaling
report (loss vs FLOPs, fits, compute multiplier)."""

from __future__ import annotations

import json
import math

import pytest

from gpam.cli.main import main
from gpam.compare import flops
from gpam.compare.grid import CompareConfig
from gpam.compare.scaling import size_configs, summarize_sizes, write_scaling_report

TINY = ["--heads", "2", "--quiet", "--threads", "1"]


def _synthetic(out, *extra: str) -> list[str]:
    return ["compare", "synthetic", "--task", "copy", "--task-option", "length=3",
            "--variants", "softmax,dagpam", "--seeds", "0,1", "--steps", "3", "--batch-size", "4",
            "--eval-batches", "1", *TINY, "--out", str(out), *extra]  # fmt: skip


@pytest.mark.slow
def test_sizes_run_the_grid_at_each_size_and_write_the_report(tmp_path, capsys):
    from gpam.data.synthetic import make_task

    batch = make_task("copy", length=3).batch(4, seed=0)
    out = tmp_path / "s"
    assert main(_synthetic(out, "--sizes", "8x1,16x1")) == 0
    printed = capsys.readouterr().out
    assert "compute multiplier" in printed and str(out / "scaling.md") in printed
    for size, (d, n) in {"8x1": (8, 1), "16x1": (16, 1)}.items():
        res = json.loads((out / f"size={size}" / "results.json").read_text())
        run = res["runs"]["dagpam/seed=1"]
        assert (run["model_config"]["d_model"], run["model_config"]["n_layers"]) == (d, n)
        assert run["cpu_s"] > 0
        # the run's FLOPs: 3 x forward of its 3 training batches (4 sequences each)
        fwd = flops.forward_flops(run["model_config"], tuple(batch.inputs.shape))
        assert run["train_flops"] == 3 * 3 * fwd
    doc = json.loads((out / "scaling.json").read_text())
    assert doc["sizes"] == ["8x1", "16x1"] and len(doc["points"]) == 8
    assert doc["loss_key"] == "final_loss"
    assert (out / "loss_vs_flops.png").stat().st_size > 1000
    text = (out / "scaling.md").read_text()
    assert "Compute multiplier over softmax" in text and "loss_vs_flops.png" in text


def test_bad_sizes_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(_synthetic(tmp_path / "x", "--sizes", "64by2"))
    assert e.value.code == 2 and "D_MODELxLAYERS" in capsys.readouterr().err
    assert main(_synthetic(tmp_path / "y", "--sizes", "8x1,9x1")) == 2  # 2 heads, 9 % 2 != 0
    assert "sizes: 9x1: d_model 9 is not divisible by heads 2" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_size_configs_replace_width_and_depth_only():
    base = CompareConfig(n_heads=4, d_ff=96)
    got = size_configs(base, [(64, 2), (128, 3)])
    assert [(c.d_model, c.n_layers, c.n_heads, c.d_ff) for c in got] == [
        (64, 2, 4, 96),
        (128, 3, 4, 96),
    ]
    with pytest.raises(ValueError, match="sizes: 66x2"):
        size_configs(base, [(66, 2)])


def _fake(size: str, c: float, losses: dict[str, list[float]]) -> dict:
    runs = {
        f"{lab}/seed={s}": {"label": lab, "attention": lab, "seed": s, "status": "done",
                            "train_flops": c * (1.1 if lab != "softmax" else 1.0),
                            "final_loss": x, "cpu_s": 1.0, "params": 100}
        for lab, xs in losses.items() for s, x in enumerate(xs)
    }  # fmt: skip
    summary = {"variants": [{"label": lab} for lab in losses]}
    return {"kind": "lm", "task": {"task": "t"}, "runs": runs, "summary": summary}


def test_report_from_results_without_training(tmp_path):
    per = {
        "a": _fake("a", 1e6, {"softmax": [4.0, 4.1], "dagpam": [3.9, 4.0]}),
        "b": _fake("b", 1e7, {"softmax": [3.0, 3.1], "dagpam": [2.9, 3.0]}),
        "c": _fake("c", 1e8, {"softmax": [2.5, 2.6], "dagpam": [2.6, 2.7]}),
    }
    doc = summarize_sizes(per)
    cells = {c["size"]: c for c in doc["multiplier"]["cells"] if c["label"] == "dagpam"}
    assert cells["c"]["multiplier"] < 1 < cells["b"]["multiplier"]  # worse at the largest size
    write_scaling_report(doc, tmp_path)
    text = (tmp_path / "scaling.md").read_text()
    assert "log-linear interpolation" in text and "| dagpam | c |" in text
    assert "final validation loss" in text  # the loss it used is named
    one = summarize_sizes({"a": per["a"]})
    assert one["multiplier"] is None and "two or more sizes" in one["multiplier_error"]


@pytest.mark.slow
def test_nmt_sizes_count_the_padded_batches(tmp_path, capsys):
    words = ["a", "b", "c", "d", "e"]
    args = []
    for split, n in (("train", 20), ("valid", 4)):
        src = [" ".join(words[(i + j) % 5] for j in range(2 + i % 3)) for i in range(n)]
        (tmp_path / f"{split}.src").write_text("\n".join(src) + "\n")
        (tmp_path / f"{split}.tgt").write_text("\n".join(s[::-1] for s in src) + "\n")
        args += [f"--{split}-src", str(tmp_path / f"{split}.src")]
        args += [f"--{split}-tgt", str(tmp_path / f"{split}.tgt")]
    out = tmp_path / "n"
    argv = ["compare", "nmt", *args, "--tokenizer", "word", "--variants", "softmax,diff2",
            "--seeds", "0", "--steps", "2", "--eval-every", "2", "--bleu-limit", "0",
            "--sizes", "8x1,16x1", *TINY, "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "report:" in capsys.readouterr().out
    pts = json.loads((out / "scaling.json").read_text())["points"]
    c = {(p["label"], p["size"]): p["compute"] for p in pts}
    assert len(c) == 4 and all(v > 0 for v in c.values())
    assert (
        c[("diff2", "8x1")] > c[("softmax", "8x1")]
        and c[("softmax", "16x1")] > c[("softmax", "8x1")]
    )


@pytest.mark.slow
def test_sizes_with_lrs_tune_each_size_and_score_on_the_test_split(tmp_path, capsys):
    """--sizes with --lrs: every size is tuned on its own (out/size=DxL/tune/), its final runs
    are at that size's chosen rates and scored on the test split (synthetic accuracy: the
    multiplier reads the validation loss and says so)."""
    out = tmp_path / "st"
    assert main(_synthetic(out, "--sizes", "8x1,16x1", "--lrs", "1e-3,4e-3")) == 0
    for size in ("8x1", "16x1"):
        res = json.loads((out / f"size={size}" / "results.json").read_text())
        chosen = res["tuning"]["chosen"]
        assert set(chosen) == {"softmax", "dagpam"}
        for run in res["runs"].values():
            assert run["lr"] == chosen[run["label"]] and "val_final_metric" in run
        assert (out / f"size={size}" / "tune" / "lr=0.001" / "results.json").exists()
    doc = json.loads((out / "scaling.json").read_text())
    assert doc["loss_key"] == "final_loss" and len(doc["points"]) == 8


def test_test_loss_is_the_log_of_a_test_perplexity():
    """A tuned LM run's final_metric is its test perplexity: the multiplier reads ln of it,
    not the validation loss; runs without a test split have none."""
    from gpam.compare.scaling import loss_key, test_loss

    tuned = {"metric": "perplexity", "final_metric": math.e**2, "val_final_metric": 9.0,
             "final_loss": 2.2}  # fmt: skip
    assert test_loss(tuned) == pytest.approx(2.0)
    assert test_loss({"metric": "perplexity", "final_metric": 7.0, "final_loss": 1.9}) is None
    assert test_loss({"metric": "accuracy", "final_metric": 0.5, "val_final_metric": 0.4}) is None
    assert loss_key([tuned])[0] == "test_loss"
    assert loss_key([tuned, {"metric": "perplexity", "final_metric": 7.0}])[0] == "final_loss"
    per = {"a": {"runs": {"r": {**tuned, "status": "done", "train_flops": 1.0, "label": "s",
                               "seed": 0}}, "summary": {"variants": [{"label": "s"}]}}}  # fmt: skip
    assert summarize_sizes(per)["points"][0]["loss"] == pytest.approx(2.0)
