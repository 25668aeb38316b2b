"""Small generated corpora so the resume, DDP, NMT and CLI tests run without ``GPAM_DATA_DIR``.

Deterministic pseudo-English lines (a fixed vocabulary, a simple subject-verb-object pattern so
a model has something to learn) and aligned "translation" pairs (the target is the source
with every word mapped through a fixed dictionary and the word order reversed).
"""

from __future__ import annotations

import random
from pathlib import Path

SUBJECTS = ["the cat", "a dog", "the king", "my friend", "the old man", "a bird", "she", "he"]
VERBS = ["sees", "likes", "finds", "keeps", "loves", "takes", "hears", "calls"]
OBJECTS = ["the ball", "a house", "the sea", "her hat", "the moon", "a song", "the road", "bread"]
ENDS = [".", "!", "?", ", and then it rains.", " again."]


def text_lines(n: int, seed: int = 0) -> list[str]:
    """``n`` short sentences (one per line)."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(ENDS)}"
        for _ in range(n)
    ]


def write_text(path: Path, n: int = 400, seed: int = 0) -> Path:
    """Write :func:`text_lines` to ``path`` and return it."""
    path.write_text("\n".join(text_lines(n, seed)) + "\n", encoding="utf-8")
    return path


def _target(sentence: str) -> str:
    words = sentence.replace(".", " .").replace("!", " !").replace("?", " ?").split()
    return " ".join(w.upper()[::-1] for w in reversed(words))


def write_pairs(folder: Path, n_train: int = 300, n_valid: int = 30, seed: int = 0) -> dict:
    """Aligned ``train.src/.tgt`` and ``valid.src/.tgt`` files; returns their paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n, s in (("train", n_train, seed), ("valid", n_valid, seed + 1)):
        src = text_lines(n, s)
        for side, lines in (("src", src), ("tgt", [_target(x) for x in src])):
            files[f"{split}_{side}"] = folder / f"{split}.{side}"
            files[f"{split}_{side}"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return files


def real_or_generated(source: str, request, what: str, n: int) -> list[str]:
    """``n`` lines of a shared corpus (``what``: "shakespeare", "ptb.valid", "ptb.test",
    "multi30k.<split>.<lang>"; needs GPAM_DATA_DIR) or, for ``source == "generated"``,
    :func:`text_lines` (German-looking target side for ``multi30k.*.de``)."""
    if source == "generated":
        lines = text_lines(n, seed=sum(map(ord, what)))
        if what.startswith("ptb."):  # a long tail of rare words, as in real text
            lines = [f"{x} name{i}" if i % 5 == 0 else x for i, x in enumerate(lines)]
        return [_target(x).lower() for x in lines] if what.endswith(".de") else lines
    import gzip

    root = request.getfixturevalue("data_dir")
    if what == "shakespeare":
        return (root / "tinyshakespeare" / "input.txt").read_text().splitlines()[:n]
    if what.startswith("ptb."):
        return (root / "ptb" / f"{what}.txt").read_text().splitlines()[:n]
    _, split, lang = what.split(".")
    with gzip.open(root / "multi30k" / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
        return [next(f).strip() for _ in range(n)]
