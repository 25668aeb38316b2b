"""`gpam compare nmt` end to end on tiny aligned files (through the training engine), with
resume, --match-params, rank collapse, peak memory and saved models."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from gpam.cli.main import main


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _files(tmp_path: Path) -> list[str]:
    rng = random.Random(0)
    words = ["a", "b", "c", "d", "e", "f", "g", "h"]
    args = []
    for split, n in (("train", 40), ("valid", 6)):
        src = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 5))) for _ in range(n)]
        (tmp_path / f"{split}.src").write_text("\n".join(src) + "\n")
        tgt = [" ".join(reversed(s.split())) for s in src]
        (tmp_path / f"{split}.tgt").write_text("\n".join(tgt) + "\n")
        args += [f"--{split}-src", str(tmp_path / f"{split}.src")]
        args += [f"--{split}-tgt", str(tmp_path / f"{split}.tgt")]
    return args


def test_compare_nmt_tiny_grid_and_resume(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    argv = [
        "compare",
        "nmt",
        *_files(tmp_path),
        "--tokenizer",
        "word",
        "--variants",
        "softmax,dagpam",
        "--seeds",
        "0,1",
        "--steps",
        "3",
        "--eval-every",
        "3",
        "--d-model",
        "16",
        "--n-layers",
        "1",
        "--n-heads",
        "2",
        "--bleu-limit",
        "4",
        "--match-params",
        "--save-models",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    assert "| dagpam |" in capsys.readouterr().out
    doc = json.loads((out / "results.json").read_text())
    assert doc["kind"] == "nmt" and doc["summary"]["metric"] == "bleu"
    labels = ("softmax", "dagpam", "softmax-matched")
    assert set(doc["runs"]) == {f"{v}/seed={s}" for v in labels for s in (0, 1)}
    for key, r in doc["runs"].items():
        assert r["steps"] == 3 and 0.0 <= r["final_metric"] <= 100.0
        assert 0.0 < r["rank_collapse"] <= 1.0 and r["peak_memory_mb"] > 0
        saved = out / "models" / key.replace("/", "_")
        assert (saved / "model.safetensors").is_file() and (saved / "tokenizer.json").is_file()
    rows = {r["label"]: r for r in doc["summary"]["variants"]}
    assert rows["dagpam"]["params"] > rows["softmax"]["params"]
    assert rows["dagpam"]["params"] <= rows["softmax-matched"]["params"]
    # resume: nothing is retrained, the document is unchanged
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text())["runs"] == doc["runs"]
    assert main([*argv[:2], "--variants", "softmax", "--out", str(out)]) == 2  # no data given
