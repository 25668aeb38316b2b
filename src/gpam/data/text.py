"""Reading plain-text corpora (gzip accepted) with clear errors and counted skips.

``read_lines`` returns the lines of a file plus :class:`ReadStats` (lines read, empty lines and
undecodable lines skipped). Non-UTF-8 bytes raise ``ValueError`` naming file and line unless
``skip_bad=True``, in which case such lines are skipped and counted.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import asdict, dataclass
from pathlib import Path


class Stats:
    """Counts of what a reader kept and skipped (a dataclass), JSON-safe through
    :meth:`to_dict`."""

    def to_dict(self) -> dict:
        """JSON-safe copy."""
        return asdict(self)


@dataclass
class ReadStats(Stats):
    """What :func:`read_lines` read and skipped."""

    path: str
    lines: int = 0
    empty_skipped: int = 0
    bad_utf8_skipped: int = 0

    def summary(self) -> str:
        """One line for logs and reports."""
        return (
            f"{self.path}: {self.lines} lines kept, {self.empty_skipped} empty skipped, "
            f"{self.bad_utf8_skipped} non-UTF-8 skipped"
        )


def bad_utf8_error(path: Path, count: int, line: int, e: UnicodeDecodeError) -> ValueError:
    """The error for ``count`` non-UTF-8 lines in ``path``, the first at ``line``; it names the
    command-line option and the Python argument that skip them."""
    what = "1 line is" if count == 1 else f"{count} lines are"
    return ValueError(
        f"data file {path}: {what} not valid UTF-8 (the first: line {line}, {e.reason} at byte "
        f"{e.start}); fix the file, or skip such lines with --skip-bad-lines "
        "(skip_bad=True in Python)"
    )


def _open_bytes(path: Path) -> bytes:
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    if path.is_dir():
        raise ValueError(f"data file {path} is a directory, expected a text file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(
                f"data file {path} looks gzipped but cannot be decompressed: {e}"
            ) from e
    return raw


def read_lines(
    path: str | os.PathLike, *, skip_empty: bool = True, skip_bad: bool = False
) -> tuple[list[str], ReadStats]:
    """Lines of a UTF-8 (optionally gzipped) text file, newline stripped.

    Empty (whitespace-only) lines are skipped and counted when ``skip_empty``; non-UTF-8 lines
    raise ``ValueError`` (file and line number) unless ``skip_bad``.
    """
    path = Path(path)
    stats = ReadStats(str(path))
    out: list[str] = []
    pieces = _open_bytes(path).split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()  # the trailing newline is not an empty line
    first: tuple[int, UnicodeDecodeError] | None = None
    for n, raw in enumerate(pieces, start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            first = first or (n, e)
            stats.bad_utf8_skipped += 1
            continue
        if skip_empty and not line.strip():
            stats.empty_skipped += 1
            continue
        out.append(line)
    if first is not None and not skip_bad:
        raise bad_utf8_error(path, stats.bad_utf8_skipped, *first) from None
    stats.lines = len(out)
    return out, stats


def read_text(path: str | os.PathLike, *, skip_bad: bool = False) -> tuple[str, ReadStats]:
    """Whole file as one string (for character models); bad bytes raise unless ``skip_bad``."""
    lines, stats = read_lines(path, skip_empty=False, skip_bad=skip_bad)
    return "\n".join(lines), stats


def split_text(text: str, train_fraction: float) -> tuple[str, str]:
    """Split a string into its first ``train_fraction`` and the rest (held-out part)."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    cut = int(len(text) * train_fraction)
    return text[:cut], text[cut:]
