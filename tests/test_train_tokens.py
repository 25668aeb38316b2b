"""Translation gradients are normalised by the step's total target tokens over micro-batches and
DDP ranks: accumulation and DDP give the gradient of one big batch even when the batches hold
different numbers of targets (issue 20 item 7). Checked in float64 to round-off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from gpam.data.pairs import collate
from gpam.data.tokenizer import PAD_ID
from gpam.train.distributed import DistInfo
from gpam.train.loop import TrainConfig, Validation, train_loop
from gpam.train.nmt import NMTTask

# four batches of sentence pairs with 10, 4, 2 and 14 target tokens (each side + <eos>)
PARTS = [
    [([5, 6, 7], [8, 9]), ([5], [6, 7, 8, 9, 10, 11])],
    [([9, 8, 7, 6, 5, 4], [4, 5, 6])],
    [([7, 7], [9])],
    [([4, 5], [10, 11, 12, 4]), ([6], [5, 6]), ([8, 9, 10], [7, 7, 7, 7, 7])],
]


class PairsTask:
    """Micro-batch ``i`` of rank ``r`` is ``groups[r][i]`` (collated), lossed like NMT."""

    def __init__(self, groups: list[list[list]], rank: int = 0) -> None:
        self.batches = [collate(sum(g, [])) for g in groups[rank]]
        self.ls = 0.1  # NMTTask's label smoothing

    def batch(self, pos):
        i = pos.get("i", 0)
        return self.batches[i % len(self.batches)], {"i": i + 1}

    def loss(self, model, b):
        return NMTTask.loss(self, model, b)  # the training loss of gpam train nmt

    def validate(self, model):
        return Validation(0.0)


def tiny_model() -> torch.nn.Module:
    from gpam.models import Seq2SeqConfig, Seq2SeqTransformer

    torch.manual_seed(0)
    cfg = Seq2SeqConfig(src_vocab_size=16, d_model=8, n_encoder_layers=1, n_decoder_layers=1,
                        n_heads=2, dropout=0.0, max_len=16)  # fmt: skip
    return Seq2SeqTransformer(cfg).double()


def step_gradients(groups, accum: int, dist: DistInfo | None = None) -> dict[str, torch.Tensor]:
    """The gradients of the first optimiser step (complete, before clipping)."""
    dist = dist or DistInfo()
    model = tiny_model()
    grads = {}

    def keep(step):
        grads.update({n: p.grad.clone() for n, p in model.named_parameters()})

    cfg = TrainConfig(steps=1, accum=accum, warmup=0, eval_every=1, clip=0.0)
    train_loop(model, PairsTask(groups, dist.rank), None, cfg, None, dist, torch.device("cpu"),
               quiet=True, after_backward=keep)  # fmt: skip
    return grads


def test_the_batches_hold_different_numbers_of_targets():
    counts = [int((collate(p)["tgt_out"] != PAD_ID).sum()) for p in PARTS]
    assert counts == [10, 4, 2, 14]


def test_accumulated_unequal_micro_batches_give_the_one_batch_gradient():
    whole = step_gradients([[PARTS]], accum=1)
    for split in ([PARTS[:1], PARTS[1:]], [[p] for p in PARTS]):
        parts = step_gradients([split], accum=len(split))
        assert parts.keys() == whole.keys()
        for name in whole:
            torch.testing.assert_close(parts[name], whole[name], rtol=1e-10, atol=1e-13,
                                       msg=name)  # fmt: skip


SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[1])
    from test_train_tokens import PARTS, step_gradients
    from gpam.train.distributed import setup_distributed, cleanup
    dist, _ = setup_distributed("cpu")
    # rank 0: parts 0 and 1 (14 targets), rank 1: parts 2 and 3 (16 targets), 2 micro-batches
    grads = step_gradients([[[PARTS[0]], [PARTS[1]]], [[PARTS[2]], [PARTS[3]]]], accum=2, dist=dist)
    with open(os.path.join(sys.argv[2], f"rank{dist.rank}.json"), "w") as f:
        json.dump({k: v.flatten().tolist() for k, v in grads.items()}, f)
    cleanup(dist)
    """
)


@pytest.mark.slow
def test_ddp_two_ranks_give_the_one_process_gradient(tmp_path):
    script = tmp_path / "ddp_grads.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(script), str(Path(__file__).parent), str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    whole = step_gradients([[PARTS]], accum=1)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got.keys() == whole.keys()
        for name, g in whole.items():
            torch.testing.assert_close(torch.tensor(got[name], dtype=torch.float64),
                                       g.flatten(), rtol=1e-10, atol=1e-13, msg=name)  # fmt: skip
