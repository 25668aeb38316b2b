"""Whole-model benchmark: LM training tokens/s and NMT decoding sentences/s per attention.

Models of equal shape differ only in their attention variant; their steps are timed round-robin
and each measured overhead (time ratio - 1 to the first attention, normally softmax) is reported
next to the overhead that the FLOP count (``torch.utils.flop_counter``) predicts. Decoding uses
untrained models whose end-of-sentence logit is pinned to 0 (its output row zeroed), so every
variant decodes the same number of tokens (``decode_len``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from gpam.bench.measure import count_flops, interleaved_times, summarize
from gpam.models import LMConfig, Seq2SeqConfig, Seq2SeqTransformer, TransformerLM


@dataclass
class ModelBenchConfig:
    """Model shape, workload sizes and repeats (one model per name in ``attentions``)."""

    attentions: Sequence[str] = ("softmax", "dagpam")
    vocab: int = 8000
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    lm_batch: int = 8
    lm_seq: int = 256
    nmt_batch: int = 16
    src_len: int = 24
    decode_len: int = 24
    beam_size: int = 4
    repeats: int = 5
    warmup: int = 1
    device: str = "cpu"
    clock: str = "wall"
    seed: int = 0
    compile: bool = False  # torch.compile the LM training model (decoding stays eager)


def _lm_workload(cfg: ModelBenchConfig, attention: str, device: torch.device) -> tuple:
    torch.manual_seed(cfg.seed)
    model = TransformerLM(
        LMConfig(
            vocab_size=cfg.vocab,
            d_model=cfg.d_model,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            max_len=cfg.lm_seq,
            dropout=0.0,
            attention=attention,
        )
    ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, cfg.vocab, (cfg.lm_batch, cfg.lm_seq + 1), device=device)
    net = torch.compile(model) if cfg.compile else model

    def fwd_bwd(m: torch.nn.Module = model) -> None:  # (eager: FLOPs are counted on it)
        logits = m(ids[:, :-1])
        F.cross_entropy(logits.reshape(-1, cfg.vocab), ids[:, 1:].reshape(-1)).backward()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        fwd_bwd(net)
        opt.step()

    compile_s = None
    if cfg.compile:  # compile now (one forward and backward), not in a timed round
        t0 = time.perf_counter()
        fwd_bwd(net)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        compile_s = time.perf_counter() - t0
        opt.zero_grad(set_to_none=True)
    return step, fwd_bwd, compile_s


def _nmt_model(cfg: ModelBenchConfig, attention: str, device: torch.device) -> Seq2SeqTransformer:
    torch.manual_seed(cfg.seed)
    model = Seq2SeqTransformer(
        Seq2SeqConfig(
            src_vocab_size=cfg.vocab,
            d_model=cfg.d_model,
            n_encoder_layers=max(1, cfg.n_layers // 2),
            n_decoder_layers=max(1, cfg.n_layers // 2),
            n_heads=cfg.n_heads,
            dropout=0.0,
            encoder_attention=attention,
            decoder_attention=attention,
            cross_attention=attention,
            tie_embeddings="none",
        )
    ).to(device)
    with torch.no_grad():
        model.out_proj.weight[cfg.vocab - 1].zero_()  # eos never wins: fixed-length decoding
    return model.eval()


def run_model_bench(cfg: ModelBenchConfig, progress: bool = True) -> list[dict]:
    """Rows ``{workload, attention, throughput, unit, overhead, flop_overhead}``."""
    device = torch.device(cfg.device)
    rows: list[dict] = []
    names = list(dict.fromkeys(cfg.attentions))
    if len(names) < 1:
        raise ValueError("attentions must name at least one variant")
    bar = tqdm(total=3, desc="models", disable=not progress)
    # LM training
    work = {a: _lm_workload(cfg, a, device) for a in names}
    flops = {a: count_flops(work[a][1]) for a in names}
    times = interleaved_times(
        {a: w[0] for a, w in work.items()},
        repeats=cfg.repeats,
        warmup=cfg.warmup,
        device=device,
        clock=cfg.clock,
    )
    stats = summarize(times, names[0])
    for a in names:
        rows.append(
            {
                "workload": f"LM training (B={cfg.lm_batch}, T={cfg.lm_seq})",
                "attention": a,
                "throughput": cfg.lm_batch * cfg.lm_seq / stats[a]["median_s"],
                "unit": "tokens/s",
                "median_s": stats[a]["median_s"],
                "overhead": stats[a]["ratio"] - 1,
                "flops": flops[a],
                "flop_overhead": flops[a] / flops[names[0]] - 1,
                "compile_s": work[a][2],
            }
        )
    del work
    bar.update()
    # NMT decoding
    models = {a: _nmt_model(cfg, a, device) for a in names}
    src = torch.randint(4, cfg.vocab - 1, (cfg.nmt_batch, cfg.src_len), device=device)
    eos = cfg.vocab - 1
    for kind, beam in (("greedy", 1), ("beam", cfg.beam_size)):

        def decode(m: Seq2SeqTransformer, beam: int = beam) -> list[list[int]]:
            if beam == 1:
                return m.greedy_decode(src, bos_id=1, eos_id=eos, max_len=cfg.decode_len)
            return m.beam_search(src, bos_id=1, eos_id=eos, beam_size=beam, max_len=cfg.decode_len)

        lengths = {a: sum(map(len, decode(models[a]))) / cfg.nmt_batch for a in names}
        flops = {a: count_flops(lambda a=a: decode(models[a])) for a in names}
        times = interleaved_times(
            {a: (lambda a=a: decode(models[a])) for a in names},
            repeats=cfg.repeats,
            warmup=cfg.warmup,
            device=device,
            clock=cfg.clock,
        )
        stats = summarize(times, names[0])
        for a in names:
            rows.append(
                {
                    "workload": f"NMT {kind} decoding (B={cfg.nmt_batch}, S={cfg.src_len}, "
                    f"{cfg.decode_len} tokens{'' if beam == 1 else f', beam {beam}'})",
                    "attention": a,
                    "throughput": cfg.nmt_batch / stats[a]["median_s"],
                    "unit": "sentences/s",
                    "median_s": stats[a]["median_s"],
                    "overhead": stats[a]["ratio"] - 1,
                    "mean_output_tokens": lengths[a],
                    "flops": flops[a],
                    "flop_overhead": flops[a] / flops[names[0]] - 1,
                }
            )
        bar.update()
    bar.close()
    return rows
