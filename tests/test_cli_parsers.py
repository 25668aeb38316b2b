"""The `gpam` parsers as a whole: cheap to build (no torch before a command runs), every option
shows its default, one spelling per setting across commands, choices from the registries."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gpam.cli._common import HelpFormatter, variant_names
from gpam.cli.main import build_parser

SRC = str(Path(__file__).resolve().parent.parent / "src")


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(command path, parser)`` of every leaf command (``("train", "lm")``, ...)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, child in subs[0].choices.items():
        yield from _walk(child, (*path, name))


LEAVES = list(_walk(build_parser()))


def _must_give(parser: argparse.ArgumentParser, action: argparse.Action) -> bool:
    """The option must be given (itself, or one of its required mutually exclusive group)."""
    return action.required or any(
        g.required and action in g._group_actions for g in parser._mutually_exclusive_groups
    )


def _options(parser: argparse.ArgumentParser):
    """Visible option actions (hidden aliases and -h left out)."""
    for a in parser._actions:
        if a.option_strings and a.dest != "help" and a.help != argparse.SUPPRESS:
            yield a


def _modules_after(argv: list[str]) -> dict:
    """Run ``gpam ARGV`` in a fresh interpreter; which heavy modules it had imported at exit."""
    code = (
        "import sys, json, atexit\n"
        "atexit.register(lambda: print(json.dumps({m: m in sys.modules for m in "
        "('torch', 'numpy', 'gpam.functional', 'gpam.nn')}), file=sys.stderr))\n"
        "from gpam.cli.main import main\n"
        f"sys.argv = ['gpam', *{argv!r}]\n"
        "sys.exit(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv", [["--version"], ["--help"], ["train", "lm", "--help"], ["analyze", "phase", "--help"]]
)
def test_version_and_help_do_not_import_torch(argv):
    loaded = _modules_after(argv)
    assert not any(loaded.values()), loaded


def test_every_command_help_builds_without_torch():
    """Every leaf's --help in one interpreter: building all parsers imports no torch."""
    code = (
        "import sys, contextlib, io\n"
        "from gpam.cli.main import main\n"
        f"for path in {[list(p) for p, _ in LEAVES]!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main([*path, '--help'])\n"
        "        except SystemExit as e:\n"
        "            assert e.code == 0, (path, e.code)\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_import_gpam_is_lazy_but_complete():
    """``import gpam`` is torch-free, and the public names still resolve on first use."""
    code = (
        "import sys, gpam\n"
        "assert 'torch' not in sys.modules\n"
        "assert gpam.VARIANTS and gpam.MultiheadAttention and gpam.functional.dagpam_attention\n"
        "assert gpam.nn.KVCache is gpam.KVCache and 'parameter_report' in dir(gpam)\n"
        "try:\n"
        "    gpam.no_such_name\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr


def test_variant_names_are_the_registry():
    import gpam
    from gpam.functional import registry

    assert variant_names() == tuple(gpam.VARIANTS) == registry.VARIANTS


def test_torch_free_names_are_the_library_ones():
    import gpam.analysis.stacks as stacks
    import gpam.nn.multihead as mh
    from gpam import _names

    assert mh.NEG_QUERIES is _names.NEG_QUERIES and mh.LAMBDA_MODES is _names.LAMBDA_MODES
    assert mh.NEG_INITS is _names.NEG_INITS and stacks.ARCHITECTURES is _names.ARCHITECTURES


@pytest.mark.parametrize("path", [("train", "lm"), ("train", "nmt")])
def test_attention_choices_are_every_variant(path):
    import gpam

    parser = dict(LEAVES)[path]
    action = parser._option_string_actions["--attention"]
    assert tuple(action.choices) == tuple(gpam.VARIANTS)
    assert "centered" in parser.format_help() and "diff2" in parser.format_help()
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--attention", "nope"])
    assert e.value.code == 2


@pytest.mark.parametrize("path", [p for p, _ in LEAVES], ids=" ".join)
def test_every_option_shows_its_default(path):
    """Options that take a value say their default in --help (in words when it is None)."""
    parser = dict(LEAVES)[path]
    fmt = HelpFormatter(prog="gpam")
    missing = [
        a.option_strings[0]
        for a in _options(parser)
        if a.nargs != 0
        and not _must_give(parser, a)
        and "default" not in fmt._get_help_string(a).lower()
    ]
    assert not missing, f"gpam {' '.join(path)}: no default shown for {missing}"


@pytest.mark.parametrize("opt", ["--seq-len", "--batch-size", "--clip", "--eval-every",
                                 "--checkpoint-every"])  # fmt: skip
def test_train_help_shows_the_issue_defaults(opt, capsys):
    parser = dict(LEAVES)[("train", "lm")]
    default = parser._option_string_actions[opt].default
    help_text = " ".join(parser.format_help().split())
    start = help_text.rindex(f"{opt} {opt.lstrip('-').replace('-', '_').upper()}")  # not usage
    assert f"(default: {default})" in help_text[start : start + 200]


def test_one_primary_flag_per_setting_across_commands():
    """A setting (option dest) has the same visible flag in every command, and a visible flag
    means the same setting everywhere, so a command copied from one to another works."""
    flag_of: dict[str, dict[str, str]] = {}
    dest_of: dict[str, dict[str, str]] = {}
    for path, parser in LEAVES:
        where = " ".join(path)
        for a in _options(parser):
            flag_of.setdefault(a.dest, {})[where] = a.option_strings[0]
            for flag in a.option_strings:
                dest_of.setdefault(flag, {})[where] = a.dest
    split_dests = {d: w for d, w in flag_of.items() if len(set(w.values())) > 1}
    split_flags = {f: w for f, w in dest_of.items() if len(set(w.values())) > 1}
    assert not split_dests, split_dests
    assert not split_flags, split_flags
    # a dest is only a name: the same setting under two dests (``n_layers`` here, ``layers``
    # there) would pass the checks above, so known synonyms must not both be visible
    visible = set(dest_of)
    for old, new in SYNONYMS.items():
        assert not (old in visible and new in visible), (old, new, dest_of[old], dest_of[new])


#: spellings of one setting found across commands (issue 20 item 16); the first is the old one
SYNONYMS = {
    "--n-layers": "--layers",
    "--n-heads": "--heads",
    "--level": "--tokenizer",
    "--width": "--d-model",
    "--vocab": "--vocab-size",
    "--batch": "--batch-size",
}


@pytest.mark.parametrize(
    ("path", "old", "new"),
    [
        (("compare", "lm"), "--n-layers", "--layers"),
        (("compare", "lm"), "--n-heads", "--heads"),
        (("compare", "lm"), "--level", "--tokenizer"),
        (("train", "lm"), "--n-layers", "--layers"),
        (("analyze", "gradients"), "--width", "--d-model"),
        (("analyze", "gradients"), "--vocab", "--vocab-size"),
        (("bench",), "--batch", "--batch-size"),
    ],
)
def test_old_spellings_are_hidden_aliases(path, old, new):
    parser = dict(LEAVES)[path]
    value = "word" if new == "--tokenizer" else "3"
    base = ["--train", "t.txt"] if path[0] == "compare" else []
    a = parser.parse_args([*base, old, value])
    b = parser.parse_args([*base, new, value])
    assert vars(a) == vars(b)
    assert not re.search(rf"{old}(?![\w-])", parser.format_help())


def test_shared_threads_option():
    """--threads on every command that computes, one definition (same type, positive ints)."""
    for path in [("train", "lm"), ("train", "nmt"), ("eval", "lm"), ("eval", "nmt"),
                 ("analyze", "phase"), ("bench",), ("compare", "lm"), ("demo",)]:  # fmt: skip
        parser = dict(LEAVES)[path]
        assert parser.parse_args([*_required(path), "--threads", "2"]).threads == 2
        with pytest.raises(SystemExit):
            parser.parse_args([*_required(path), "--threads", "0"])


def _required(path: tuple[str, ...]) -> list[str]:
    return {
        ("eval", "lm"): ["--model", "m", "--text", "t"],
        ("eval", "nmt"): ["--model", "m", "--src", "s", "--ref", "r"],
        ("compare", "lm"): ["--train", "t"],
    }.get(path, [])
