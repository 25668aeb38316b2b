"""`gpam compare nmt` end to end on tiny aligned files (through gpam.train.nmt), with resume."""

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
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    assert "| dagpam |" in capsys.readouterr().out
    doc = json.loads((out / "results.json").read_text())
    assert doc["kind"] == "nmt" and doc["summary"]["metric"] == "bleu"
    assert set(doc["runs"]) == {f"{v}/seed={s}" for v in ("softmax", "dagpam") for s in (0, 1)}
    for r in doc["runs"].values():
        assert r["steps"] == 3 and 0.0 <= r["final_metric"] <= 100.0
        assert (Path(r["run_dir"]) / "model" / "model.safetensors").is_file()
    rows = {r["label"]: r for r in doc["summary"]["variants"]}
    assert rows["dagpam"]["params"] > rows["softmax"]["params"]
    # resume: nothing is retrained, the document is unchanged
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text())["runs"] == doc["runs"]
    assert main([*argv[:2], "--variants", "softmax", "--out", str(out)]) == 2  # no data given
