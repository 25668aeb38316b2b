"""`gpam demo --quick` end to end in a temporary folder (default output folder under the cwd)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpam.cli.main import main


def test_demo_quick_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quick", "--quiet"]) == 0
    text = capsys.readouterr().out
    (out,) = tmp_path.glob("gpam-demo-*")
    report = out / "report.md"
    assert text.strip().splitlines()[-1] == f"report: {report}"
    assert "rank collapse vs saturation" in text and "| dagpam |" in text and "| cog |" in text
    # the dilemma table: one row per setting, one cell per qk gain, and one sentence each
    assert "| attention | g=1 | g=8 |" in text
    body = report.read_text()
    assert "## 1. The dilemma across the logit scale" in body and "## 2. Short comparison" in body
    ph = json.loads((out / "phase" / "phase.json").read_text())
    labels = list(dict.fromkeys(r["label"] for r in ph["results"]))
    assert labels[:2] == ["softmax", "dagpam lam_neg=1"] and "cog" in labels and "diff" in labels
    assert {r["qk_gain"] for r in ph["results"]} == {1.0, 8.0}
    assert len(ph["critical"]) == len(labels)
    for c in ph["critical"]:  # each setting's sentence is in the report
        assert f"- {c['label']} (attention_norm, vo gain 1)" in body
    # softmax: a larger qk gain leaves more of the residual and a smaller Jacobian (saturation)
    soft = {r["qk_gain"]: r for r in ph["results"] if r["label"] == "softmax"}
    assert soft[8.0]["residual_fro_mean"][-1] > soft[1.0]["residual_fro_mean"][-1]
    assert sum(soft[8.0]["jacobian_rel_mean"]) < sum(soft[1.0]["jacobian_rel_mean"])
    assert (out / "phase" / "phase_dilemma_attention_norm.png").is_file()
    res = json.loads((out / "compare" / "results.json").read_text())
    assert len(res["runs"]) == 3 * 2
    assert {r["label"] for r in res["summary"]["variants"]} == {"softmax", "dagpam", "cog"}
    assert (out / "compare" / "curves_metric.png").is_file()
    # one cost figure, on the CPU clock, named in the header (issue 20 item 17)
    assert res["config"]["train"]["budget_clock"] == "cpu"
    assert "ms/step (cpu clock)" in text and "| ms/step |" not in body
    assert "residual (1 = spread, 0 = collapsed)" in body and "rank collapse |" not in body
    # the dilemma's grid and the commands for it and for the finer default grid (item 20)
    assert "Grid: qk gains 1, 8 (2 gains), 1 trials" in body and "Grid: qk gains 1, 8" in text
    assert "11 gains 2^(k/2) from 0.5 to 16 and 3 trials" in body
    assert "`gpam analyze phase --out phase`" in body
    assert "--qk-gains 1,8 --trials 1 --out phase-demo`" in body


def test_phase_grid_note_commands_parse_and_match_the_demo_grid() -> None:
    import re

    from gpam.analysis.phase import PhaseConfig
    from gpam.cli.main import build_parser
    from gpam.compare.demo import DemoSettings, phase_grid_note

    s = DemoSettings()
    cmds = re.findall(r"`gpam (analyze phase [^`]*)`", phase_grid_note(s))
    assert len(cmds) == 3
    parser = build_parser()
    fine, defaults, demo = (parser.parse_args(c.split()) for c in cmds)
    assert demo.qk_gains == list(s.qk_gains) and demo.trials == s.trials
    assert demo.variants == list(s.dilemma_variants) and demo.lam_neg == [1.0]
    assert demo.depth == s.depth and demo.neg_query == ["linear"]
    # the finer grid is analyze phase's default (left to the library, so None when parsed)
    assert fine.qk_gains is None and defaults.qk_gains is None
    assert len(PhaseConfig().qk_gains) == 11 and fine.trials == 3 == PhaseConfig().trials
    assert fine.variants == demo.variants


def test_demo_bad_device_is_a_clean_error(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--quick", "--quiet", "--device", "nonsense", "--out", str(tmp_path)]) != 0


@pytest.fixture(autouse=True)
def _restore_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
