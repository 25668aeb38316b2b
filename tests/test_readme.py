"""Every code block of README.md works as written (issue 20 item 11).

* ```python blocks run verbatim, each in a fresh namespace, in an empty folder where the README's
  placeholder paths exist: :data:`PLACEHOLDERS` maps each one (``path/to/model``, ``train.txt``)
  to a builder that makes a tiny stand-in there (a 1-layer GPT-2 with a character tokenizer,
  built offline; a few KB of text). A new placeholder in the README needs an entry here.
* ```bash blocks: every ``gpam ...`` command (also after ``|``, ``&&`` and ``torchrun -m
  gpam.cli.main``) is parsed by the real parser, so a renamed or misspelt option, a bad choice or
  a missing required option fails here. They are not run: most train for minutes.
  The same check covers the commands in ``docs/*.md``.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from gpam.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 80  # ~3.7k chars


def blocks(path: Path, lang: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every fenced block of ``lang`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 2, m.group(2))
        for m in FENCE.finditer(text)
        if m.group(1) == lang
    ]


def _tiny_hf_model(path: Path) -> None:
    """A 1-layer GPT-2 (width 8, context 260) and a character tokenizer of :data:`TEXT`."""
    transformers = pytest.importorskip("transformers")
    import torch

    from gpam.hf import char_tokenizer

    tok = char_tokenizer(TEXT)
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=len(tok), n_positions=260, n_embd=8, n_layer=1, n_head=1,
        bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    transformers.GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)


def _train_text(path: Path) -> None:
    path.write_text(TEXT, encoding="utf-8")


#: README placeholder path -> builder of its tiny stand-in
PLACEHOLDERS: dict[str, Callable[[Path], None]] = {
    "path/to/model": _tiny_hf_model,
    "train.txt": _train_text,
}

PYTHON_BLOCKS = blocks(README, "python")


def test_readme_has_the_blocks_this_test_runs():
    assert len(PYTHON_BLOCKS) >= 3
    text = README.read_text(encoding="utf-8")
    for name in PLACEHOLDERS:  # a stale mapping would hide a README that changed
        assert f'"{name}"' in text, name


def _block_params() -> list:
    """One test per block; the fine-tuning one (500 steps as written: about 30 s on the busy
    2-core development machine) is marked slow."""
    return [
        pytest.param(
            line,
            code,
            id=f"line{line}",
            marks=[pytest.mark.slow] if "finetune_text" in code else [],
        )
        for line, code in PYTHON_BLOCKS
    ]


@pytest.mark.parametrize(("line", "code"), _block_params())
def test_python_block_runs_as_written(line, code, tmp_path, monkeypatch):
    import torch

    if "transformers" in code:
        pytest.importorskip("transformers")
    monkeypatch.chdir(tmp_path)
    for name, build in PLACEHOLDERS.items():
        if f'"{name}"' in code:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            build(tmp_path / name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
    finally:
        torch.set_num_threads(threads)


# --- shell commands ------------------------------------------------------------------------

SEPARATORS = {"|", "||", "&&", ";", "&"}


def gpam_commands(code: str) -> list[list[str]]:
    """The argument lists of every ``gpam`` invocation in a shell block (``...`` dropped)."""
    commands = []
    for logical in code.replace("\\\n", "").splitlines():  # as the shell joins lines
        words = shlex.split(logical, comments=True)
        current: list[str] = []
        for w in [*words, ";"]:
            if w not in SEPARATORS:
                current.append(w)
                continue
            argv = _gpam_argv(current)
            if argv is not None:
                commands.append([a for a in argv if a != "..."])
            current = []
    return commands


def _gpam_argv(words: list[str]) -> list[str] | None:
    kept, skip_next = [], False
    for w in words:  # drop redirections: "> log", ">log", "2>&1"
        if skip_next:
            skip_next = False
        elif re.fullmatch(r"\d?>>?", w):
            skip_next = True
        elif not re.match(r"\d?>", w):
            kept.append(w)
    words = kept
    if words[:1] == ["gpam"]:
        return words[1:]
    if "gpam.cli.main" in words:  # torchrun ... -m gpam.cli.main ARGS / python -m gpam.cli.main
        return words[words.index("gpam.cli.main") + 1 :]
    return None


SHELL_FILES = [README, *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = [
    (f"{path.name}:{line}", argv)
    for path in SHELL_FILES
    for line, code in blocks(path, "bash")
    for argv in gpam_commands(code)
]


def test_the_shell_blocks_hold_gpam_commands():
    readme = [c for c in COMMANDS if c[0].startswith("README.md")]
    assert len(readme) >= 20, readme  # the extraction still finds the README's commands


def test_command_extraction():
    code = (
        'echo "Ein Hund." | gpam translate --model m   # BLEU\n'
        "pip install x && gpam demo\n"
        "gpam train lm --train a.txt \\\n    --steps 3 > log 2>&1 &\n"
        "torchrun --nproc_per_node 2 -m gpam.cli.main train lm ...\n"
        "python -m pytest\n"
    )
    assert gpam_commands(code) == [
        ["translate", "--model", "m"],
        ["demo"],
        ["train", "lm", "--train", "a.txt", "--steps", "3"],
        ["train", "lm"],
    ]


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_gpam_command_parses(where, argv):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{where}: gpam {shlex.join(argv)}\n{err.getvalue().strip()} (exit {e.code})")


# --- the trap behind the Hugging Face block ------------------------------------------------


def test_finetune_text_names_a_missing_tokenizer(tmp_path):
    """A converted model saved without its tokenizer: a clear error, not '0 tokens'."""
    transformers = pytest.importorskip("transformers")
    import gpam.hf

    model_dir = tmp_path / "model"
    _tiny_hf_model(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
    gpam.hf.convert(model, attention="dagpam", lam_neg=0.0)
    model.save_pretrained(tmp_path / "converted")  # no tokenizer.save_pretrained
    _train_text(tmp_path / "train.txt")
    with pytest.raises(ValueError, match="no tokenizer could be loaded.*save_pretrained"):
        gpam.hf.finetune_text(tmp_path / "converted", tmp_path / "train.txt", tmp_path / "out",
                              steps=1, seq_len=8)  # fmt: skip
    assert not (tmp_path / "out").exists()
