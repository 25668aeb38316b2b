"""Every option of `gpam train`, `gpam compare` and `gpam eval` takes effect or is refused with a
clear error. Each option is set away from its default and the call the command makes into the
library (captured, nothing is trained) must differ from the call with defaults."""

from __future__ import annotations

import argparse

import pytest
import torch

from gpam.cli.main import build_parser, main

# values for options whose type gives no obvious "other" value
SPECIAL = {
    "--train": "other.txt",
    "--valid": "v.txt",
    "--hf-dataset": "text",
    "--hf-config": "cfg",
    "--hf-column": "body",
    "--attention": "softmax",
    "--neg-query": "negate",
    "--neg-init": "neg_identity",
    "--lambda-mode": "head",
    "--hf-model": None,  # a mode of its own (tested below)
    "--out": "elsewhere",
    "--device": "cpu:0",
    "--train-src": "a.src",
    "--train-tgt": "a.tgt",
    "--valid-src": "b.src",
    "--valid-tgt": "b.tgt",
    "--src-lang": "fr",
    "--tgt-lang": "de",
    "--dataset": "wikitext:raw",
    "--task": "copy",
    "--task-option": "length=5",
    "--variants": "softmax,cog",
    "--seeds": "4,5",
    "--lam-neg": "0.25",
    "--model": "other-model",
    "--text": "other.txt",
    "--src": "s2.txt",
    "--max-eval-tokens": "500",
    "--ref": "r2.txt",
}


def _parser(*path: str) -> argparse.ArgumentParser:
    p = build_parser()
    for name in path:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        p = sub.choices[name]
    return p


def _other_value(action: argparse.Action) -> list[str]:
    opt = action.option_strings[0]
    if isinstance(action, argparse._StoreTrueAction):
        return [opt]
    if isinstance(action, argparse.BooleanOptionalAction):
        return [opt]  # default None: --x sets True
    if opt in SPECIAL:
        return [opt, SPECIAL[opt]]
    if action.choices:
        other = next(c for c in action.choices if c != action.default)
        return [opt, str(other)]
    d = action.default
    if isinstance(d, bool):
        return [opt]
    if isinstance(d, int):
        return [opt, str(d + 2)]
    if isinstance(d, float):
        return [opt, str(d / 2 if d else 0.3)]
    if d is None:  # numbers without a default
        return [opt, "0.2" if action.type is float else "7"]
    raise AssertionError(f"no test value for {opt}")


# options whose effect is not on the library call: --threads sets torch's thread count (checked
# where it is met), --overwrite only lets a used --out through (tests/test_cli_errors.py)
NOT_ON_THE_CALL = ("--overwrite",)


def _options(*path: str, skip: tuple[str, ...] = ()) -> list[tuple[str, list[str]]]:
    out = []
    for a in _parser(*path)._actions:
        if not a.option_strings or a.dest == "help" or a.option_strings[0] in skip:
            continue
        if a.help == argparse.SUPPRESS or a.option_strings[0] in NOT_ON_THE_CALL:
            continue  # hidden aliases of other options
        if SPECIAL.get(a.option_strings[0], "") is None:
            continue
        out.append((a.option_strings[0], _other_value(a)))
    return out


class Captured(Exception):
    pass


@pytest.fixture(autouse=True)
def _keep_threads():
    """--threads changes torch's global thread count: restore it after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _took_effect(opt, extra, code, got, ref) -> bool:
    """The option changed the library call, or (--threads) torch's thread count."""
    if opt == "--threads":
        return code == 0 and torch.get_num_threads() == int(extra[1])
    return code == 0 and got != ref


def _capture(monkeypatch, module, name, result=None):
    calls = []

    def fake(*a, **k):
        calls.append(repr((a, sorted(k.items()))))
        if result is None:
            raise Captured
        return result

    monkeypatch.setattr(module, name, fake)
    return calls


def _call(argv, calls):
    n = len(calls)
    try:
        code = main(argv)
    except Captured:
        code = 0
    except SystemExit as e:  # argparse refusing a combination (e.g. mutually exclusive)
        code = e.code
    return code, calls[n] if len(calls) > n else None


TRAIN_RESULT = {"steps": 1, "stopped": "steps", "final_val_loss": 1.0}


@pytest.mark.parametrize("task", ["lm", "nmt"])
def test_every_train_option_takes_effect(task, monkeypatch, tmp_path, capsys):
    import gpam.train.lm as lm
    import gpam.train.nmt as nmt

    fn = {"lm": (lm, "train_lm"), "nmt": (nmt, "train_nmt")}[task]
    calls = _capture(monkeypatch, *fn, result=TRAIN_RESULT)
    base = ["train", task, "--out", str(tmp_path / "o")]
    code, ref = _call(base, calls)
    assert code == 0 and ref is not None
    for opt, extra in _options("train", task, skip=("--out",)):
        code, got = _call([*base, *extra], calls)
        err = capsys.readouterr().err
        assert _took_effect(opt, extra, code, got, ref) or (code == 2 and "error" in err), (
            opt,
            err,
        )


def test_lam_pos_selects_the_non_affine_form(monkeypatch, tmp_path):
    import gpam.train.lm as lm

    seen = []
    monkeypatch.setattr(lm, "train_lm", lambda d, kw, *a, **k: seen.append(kw) or TRAIN_RESULT)
    assert main(["train", "lm", "--lam-pos", "1.2", "--lam-neg", "0.3",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    assert seen[-1]["lam_pos"] == 1.2 and seen[-1]["affine"] is False
    from gpam.models import LMConfig

    cfg = LMConfig(vocab_size=10, **{k: v for k, v in seen[-1].items() if v is not None})
    assert cfg.affine is False and cfg.lam_pos == 1.2  # the model config accepts it


@pytest.mark.parametrize("kind", ["synthetic", "lm", "nmt"])
def test_every_compare_option_takes_effect(kind, monkeypatch, tmp_path, capsys):
    import gpam.compare.cli_entry as entry
    import gpam.compare.nmt as cnmt
    import gpam.data.lm as dlm

    calls = _capture(monkeypatch, entry, "run_compare")
    _capture(monkeypatch, cnmt, "run_compare_nmt")
    monkeypatch.setattr(cnmt, "run_compare_nmt", entry.run_compare)  # one capture list
    monkeypatch.setattr(entry, "run_planned", entry.run_compare)  # --lrs / --target-mde
    monkeypatch.setattr(dlm, "prepare_lm_corpus", lambda d, *a, **k: _Named(repr(d)))
    base = {
        "synthetic": ["compare", "synthetic"],
        "lm": ["compare", "lm", "--train", "t.txt"],
        "nmt": ["compare", "nmt", "--train-src", "x.src", "--train-tgt", "x.tgt"],
    }[kind] + ["--out", str(tmp_path / "o")]
    threads = torch.get_num_threads()
    try:
        code, ref = _call(base, calls)
        assert code == 0 and ref is not None, capsys.readouterr().err
        for opt, extra in _options("compare", kind, skip=("--out", "--train")):
            code, got = _call([*base, *extra], calls)
            err = capsys.readouterr().err
            if opt == "--threads":  # takes effect on torch, not on the call
                assert code == 0 and torch.get_num_threads() == int(extra[1])
                continue
            assert (code == 0 and got != ref) or (code == 2 and "error" in err), (opt, err)
    finally:
        torch.set_num_threads(threads)


class _Named:
    """A stand-in task whose repr carries the data options it was built from."""

    name = "t"

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


@pytest.mark.parametrize("task", ["lm", "nmt"])
def test_every_eval_option_takes_effect(task, monkeypatch, tmp_path, capsys):
    import gpam.train.evaluate as ev

    calls = _capture(monkeypatch, ev, f"run_eval_{task}")
    base = {
        "lm": ["eval", "lm", "--model", "m", "--text", "t.txt"],
        "nmt": ["eval", "nmt", "--model", "m", "--src", "s.txt", "--ref", "r.txt"],
    }[task] + ["--out", str(tmp_path / "o")]
    code, ref = _call(base, calls)
    assert code == 0 and ref is not None
    for opt, extra in _options("eval", task, skip=("--out",)):
        code, got = _call([*base, *extra], calls)
        err = capsys.readouterr().err
        assert _took_effect(opt, extra, code, got, ref) or (code == 2 and "error" in err), (
            opt,
            err,
        )


def test_hf_model_uses_or_refuses_every_option(monkeypatch, tmp_path, capsys):
    pytest.importorskip("transformers")
    import gpam.hf.finetuning as ft
    from gpam.cli.train import HF_OPTIONS

    calls = _capture(monkeypatch, ft, "finetune_text",
                     result={"val_loss_before": 2.0, "val_loss_after": 1.0})  # fmt: skip
    base = ["train", "lm", "--hf-model", "base", "--train", "t.txt", "--out", str(tmp_path)]
    code, ref = _call(base, calls)
    assert code == 0
    # lam_neg 0 and learnable lambdas by default, as finetune_text
    assert "('lam_neg', 0.0)" in ref and "('learnable_lambda', True)" in ref
    for opt, extra in _options("train", "lm", skip=("--out", "--train")):
        if opt == "--learnable-lambda":
            extra = ["--no-learnable-lambda"]  # learnable is already the default here
        code, got = _call([*base, *extra], calls)
        err = capsys.readouterr().err
        dest = _parser("train", "lm")._option_string_actions[opt].dest
        if dest in HF_OPTIONS:
            assert _took_effect(opt, extra, code, got, ref), (opt, err)
        else:
            assert code == 2 and f"does not use {opt}" in err, (opt, err)
