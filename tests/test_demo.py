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
    assert "rank collapse" in text and "| dagpam |" in text and "| cog |" in text
    assert "Layers until the residual falls below" in text
    body = report.read_text()
    assert "## 1. Rank collapse" in body and "## 2. Short comparison" in body
    rc = json.loads((out / "rank_collapse" / "rank_collapse.json").read_text())
    labels = [r["label"] for r in rc["results"]]
    assert labels[0] == "softmax" and any(lab.startswith("dagpam") for lab in labels)
    # pure attention at init: softmax's residual shrinks with depth
    soft = rc["results"][0]["residual_fro_mean"]
    assert soft[-1] < soft[0]
    res = json.loads((out / "compare" / "results.json").read_text())
    assert len(res["runs"]) == 3 * 2
    assert {r["label"] for r in res["summary"]["variants"]} == {"softmax", "dagpam", "cog"}
    assert (out / "compare" / "curves_metric.png").is_file()


def test_demo_bad_device_is_a_clean_error(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--quick", "--quiet", "--device", "nonsense", "--out", str(tmp_path)]) != 0


@pytest.fixture(autouse=True)
def _restore_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
