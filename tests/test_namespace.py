"""``gpam._namespace.dataclass_from``: parsed options -> settings dataclasses by field name."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from gpam._namespace import dataclass_from
from gpam.cli.main import build_parser


def _parse(command: str) -> argparse.Namespace:
    return build_parser().parse_args(command.split(" "))


@dataclass
class _Opts:
    a: int
    b: str = "b"
    c: float = 1.0


def test_fields_by_name_overrides_win_and_others_keep_defaults():
    ns = argparse.Namespace(a=3, c=2.5, unrelated="x")
    assert dataclass_from(_Opts, ns) == _Opts(a=3, b="b", c=2.5)
    assert dataclass_from(_Opts, ns, c=7.0, b="z") == _Opts(a=3, b="z", c=7.0)


def test_missing_required_field_and_non_dataclass_raise():
    with pytest.raises(TypeError):
        dataclass_from(_Opts, argparse.Namespace(b="only"))
    with pytest.raises(TypeError, match="cls must be a dataclass"):
        dataclass_from(dict, argparse.Namespace())


def test_train_lm_options_reach_data_and_train_config():
    from gpam.train.lm import LMDataOptions
    from gpam.train.loop import TrainConfig

    a = _parse(
        "train lm --train t.txt --valid v.txt --holdout-fraction 0.2 --hf-column body "
        "--tokenizer word --vocab-size 50 --min-freq 2 --skip-bad-lines --seq-len 7 "
        "--batch-size 3 --max-eval-tokens 99 --steps 11 --warmup 3 --schedule constant "
        "--patience 2 --accum 2 --bf16 --seed 5"
    )
    d = dataclass_from(LMDataOptions, a, skip_bad=a.skip_bad_lines)
    assert d == LMDataOptions(
        train="t.txt", valid="v.txt", holdout_fraction=0.2, hf_column="body", tokenizer="word",
        vocab_size=50, min_freq=2, skip_bad=True, seq_len=7, batch_size=3, max_eval_tokens=99,
    )  # fmt: skip
    cfg = dataclass_from(TrainConfig, a)
    assert (cfg.steps, cfg.warmup, cfg.schedule, cfg.patience, cfg.accum, cfg.bf16, cfg.seed) == (
        11, 3, "constant", 2, 2, True, 5,
    )  # fmt: skip
    assert cfg.warmup_fraction is None and cfg.beta1 == TrainConfig().beta1  # no such options


def test_compare_nmt_options_reach_nmt_data_options():
    from gpam.compare.cli_entry import nmt_data_from_args
    from gpam.train.nmt import NMTDataOptions

    a = _parse(
        "compare nmt --dataset wmt:de-en --src-lang fr --tgt-lang de --tokenizer word "
        "--vocab-size 40 --max-len 9 --max-tokens 100"
    )
    assert nmt_data_from_args(a) == NMTDataOptions(
        hf_dataset="wmt", hf_config="de-en", src_lang="fr", tgt_lang="de", tokenizer="word",
        vocab_size=40, max_len=9, max_tokens=100,
    )  # fmt: skip
