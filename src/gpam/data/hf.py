"""Hugging Face ``datasets`` corpora (needs network for hub names; local builders work offline).

``load_hf_lines("wikitext", config="wikitext-103-raw-v1", split="train")`` returns the text
column as lines; ``load_hf_pairs("iwslt2017", config="iwslt2017-de-en", src_lang="de",
tgt_lang="en")`` returns sentence pairs from a ``translation`` column (or two plain columns).
Local files go through the same code: ``load_hf_lines("text", data_files=...)``.
"""

from __future__ import annotations

from typing import Any


def _load(name: str, config: str | None, split: str, data_files: Any) -> Any:
    try:
        from datasets import load_dataset
    except ImportError as e:  # pragma: no cover - datasets is a test extra
        raise ValueError("--hf-dataset needs the `datasets` package: pip install datasets") from e
    try:
        return load_dataset(name, config, split=split, data_files=data_files)
    except (FileNotFoundError, ConnectionError) as e:
        raise ValueError(
            f"hf dataset {name!r} (config {config!r}, split {split!r}) could not be "
            f"loaded (offline or unknown name?): {e}"
        ) from e
    except ValueError as e:
        raise ValueError(f"hf dataset {name!r} split {split!r}: {e}") from e


def load_hf_lines(
    name: str,
    *,
    config: str | None = None,
    split: str = "train",
    column: str = "text",
    data_files: Any = None,
) -> list[str]:
    """Lines of column ``column`` of a dataset split (empty lines kept; callers count them)."""
    ds = _load(name, config, split, data_files)
    if column not in ds.column_names:
        raise ValueError(
            f"hf dataset {name!r} has no column {column!r}; columns: "
            f"{', '.join(ds.column_names)} (use --hf-column)"
        )
    return [str(t).rstrip("\n") for t in ds[column]]


def load_hf_pairs(
    name: str,
    *,
    src_lang: str,
    tgt_lang: str,
    config: str | None = None,
    split: str = "train",
    data_files: Any = None,
) -> list[tuple[str, str]]:
    """``(source, target)`` pairs from a ``translation`` dict column or two plain columns."""
    ds = _load(name, config, split, data_files)
    if "translation" in ds.column_names:
        rows = ds["translation"]
        try:
            return [(r[src_lang], r[tgt_lang]) for r in rows]
        except KeyError as e:
            raise ValueError(f"hf dataset {name!r}: translation column lacks language {e}") from e
    if src_lang in ds.column_names and tgt_lang in ds.column_names:
        return list(zip(ds[src_lang], ds[tgt_lang]))
    raise ValueError(
        f"hf dataset {name!r} has neither a 'translation' column nor columns "
        f"{src_lang!r} and {tgt_lang!r}; columns: {', '.join(ds.column_names)}"
    )
