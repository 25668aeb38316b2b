"""Paired A/B of daGPAM's paths: one SDPA call over 2H query heads, two calls, and for a
decoding step the weights-first step and the one call over two query rows (the fold).

    python benchmarks/dagpam_sdpa_calls.py [ROUNDS] [--only decode|nmt|fold|causal|pairs]

One thread, float32, process CPU time (robust on a shared machine). Each round times softmax
SDPA and every daGPAM path of ``gpam.functional.dagpam_attention`` back to back
(``ONE_CALL_DEVICES`` / ``FOLD_DEVICES`` switch the path), so the ratios are paired; medians and
quartiles over rounds are printed.

* causal, B=2, H=8, D=64, forward+backward, L = 1024, 2048: one call over 2H heads vs two calls
  (the fold does not apply to causal attention);
* ``decode``: a decoding step (one query row, no grad, laid out as ``gpam.MultiheadAttention``'s
  one-GEMM query leaves them; B = 1, 4, 16, 64; Lk = 8, 24, 64, 256; H = 4 over 4 K/V heads and
  9 over 3): the weights-first step (``gpam.functional._decode``, timed at every size) vs the
  SDPA paths the defaults would take without it (the fold where it applies, else two calls),
  both arms repeating the call as often as the SDPA paths take about 20 ms, rounds alternating
  which arm runs first; median and range of the per-round ratios (``DECODE_MIN_SCORES``'s
  source);
* ``nmt``: whole greedy and beam-4 decoding of the ``gpam bench --models`` daGPAM translation
  model (B=16, 24 source and 24 output tokens), weights-first step on vs off (the SDPA paths),
  rounds alternating which runs first, with a check that both give the same tokens;
* ``fold``: the same step with the weights-first step off, over 24 or 256 keys, H=4: the fold
  (one call over the two query rows, ``gpam.functional.dagpam.folded_query``) vs two calls;
* ``pairs``: ``gpam.functional.dagpam.dagpam_pairs`` (the layer's one-GEMM query as pairs of
  heads) as one SDPA call vs split into two (``PAIRS_ONE_CALL_DEVICES``), causal fwd+bwd at
  B=2, H=8, D=64, L = 256, 1024, 2048, then a whole training step (forward, backward) of the
  ``gpam bench --models`` LM (d_model 256, 4 layers, 4 heads, batch 8) at 64 and 256 tokens,
  rounds alternating which arm runs first, with the largest gradient difference.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import gpam.functional._decode as dd
import gpam.functional.dagpam as dg

CPU, NONE = frozenset({"cpu"}), frozenset()


def _cpu_time(fn: Callable[[], object]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def _paired(arms: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per round of each arm, timed round-robin after one warm-up round."""
    for fn in arms.values():
        fn()
    times: dict[str, list[float]] = {a: [] for a in arms}
    for _ in range(rounds):
        for a, fn in arms.items():
            times[a].append(_cpu_time(fn))
    return times


def _ratio(times: dict[str, list[float]], a: str, b: str) -> str:
    r = [x / y for x, y in zip(times[a], times[b])]
    q1, med, q3 = statistics.quantiles(r, n=4)
    return f"{a}/{b} {med:.3f} [{q1:.3f}, {q3:.3f}]"


def _set_paths(one_call: frozenset, fold: frozenset, decode: frozenset = NONE) -> None:
    dg.ONE_CALL_DEVICES, dg.FOLD_DEVICES, dd.DECODE_DEVICES = one_call, fold, decode


def _dagpam(x: tuple, go: torch.Tensor | None, causal: bool, paths: tuple) -> Callable[[], None]:
    def run() -> None:
        _set_paths(*paths)
        out = dg.dagpam_attention(*x, lam_neg=0.5, is_causal=causal)
        if go is not None:
            out.backward(go)

    return run


def _sdpa(x: tuple, go: torch.Tensor | None, causal: bool) -> Callable[[], None]:
    def run() -> None:
        out = F.scaled_dot_product_attention(x[0], x[2], x[3], is_causal=causal)
        if go is not None:
            out.backward(go)

    return run


def _report(label: str, times: dict[str, list[float]], pairs: list[tuple[str, str]]) -> None:
    med = statistics.median
    ms = ", ".join(f"{a} {med(t) * 1e3:.2f} ms" for a, t in times.items())
    print(f"{label}: {ms}; " + "; ".join(_ratio(times, a, b) for a, b in pairs))


def causal_calls(rounds: int) -> None:
    """One call over 2H query heads vs two calls, causal fwd+bwd."""
    for length in (1024, 2048):
        g = torch.Generator().manual_seed(0)
        x = tuple(torch.randn(2, 8, length, 64, generator=g).requires_grad_() for _ in range(4))
        go = torch.randn(2, 8, length, 64, generator=g)
        arms = {
            "sdpa": _sdpa(x, go, True),
            "one_call": _dagpam(x, go, True, (CPU, NONE)),
            "two_calls": _dagpam(x, go, True, (NONE, NONE)),
        }
        t = _paired(arms, rounds)
        _report(f"causal L={length}", t, [("one_call", "two_calls"), ("two_calls", "sdpa")])


def folded_rows(rounds: int) -> None:
    """A decoding step (one query row, no grad): the fold vs two calls, over batch and keys."""
    for b, lk in [(b, lk) for lk in (24, 256) for b in (1, 4, 16, 64)]:
        g = torch.Generator().manual_seed(0)
        # the layer's one-GEMM layout: each head's (positive, negative) query rows adjacent
        q, q_neg = torch.randn(b, 1, 4, 2, 64, generator=g).permute(3, 0, 2, 1, 4).unbind(0)
        x = (q, q_neg, torch.randn(b, 4, lk, 64, generator=g), torch.randn(b, 4, lk, 64))
        saved, dg.FOLD_MIN_KEY_ROWS = dg.FOLD_MIN_KEY_ROWS, 0  # time the fold at every size
        arms = {
            "sdpa": _sdpa(x, None, False),
            "fold": _dagpam(x, None, False, (NONE, CPU)),
            "two_calls": _dagpam(x, None, False, (NONE, NONE)),
        }
        assert dg.folded_query(q, q_neg, x[2], None, False, 0.0, CPU) is not None
        with torch.no_grad():
            t = _paired(arms, rounds)
        dg.FOLD_MIN_KEY_ROWS = saved
        label = f"decoding step B={b} H=4 Lq=1 Lk={lk} ({b * 4 * lk} key rows)"
        _report(label, t, [("fold", "two_calls"), ("fold", "sdpa"), ("two_calls", "sdpa")])


def _calls_for(fn: Callable[[], None], seconds: float = 0.02) -> int:
    """How many calls of ``fn`` take about ``seconds`` (a decoding step takes microseconds)."""
    for _ in range(5):
        fn()
    t = time.perf_counter()
    for _ in range(20):
        fn()
    return max(3, int(seconds / ((time.perf_counter() - t) / 20)))


def _repeated(fn: Callable[[], None], n: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(n):
            fn()

    return run


def decode_steps(rounds: int) -> None:
    """A decoding step: the weights-first step vs the SDPA paths, over batch, heads and keys."""
    saved = dd.DECODE_MIN_SCORES
    dd.DECODE_MIN_SCORES = 0  # time the step at every size
    try:
        heads, batches, keys = ((4, 4), (9, 3)), (1, 4, 16, 64), (8, 24, 64, 256)
        grid = [(hd, b, n) for hd in heads for b in batches for n in keys]
        for (h, hkv), b, lk in grid:
            g = torch.Generator().manual_seed(0)
            q, q_neg = torch.randn(b, 1, h, 2, 64, generator=g).permute(3, 0, 2, 1, 4).unbind(0)
            k, v = torch.randn(b, hkv, lk, 64, generator=g), torch.randn(b, hkv, lk, 64)
            x = (q, q_neg, k, v)
            step, paths = (_dagpam(x, None, False, (NONE, CPU, d)) for d in (CPU, NONE))
            with torch.no_grad():
                n = _calls_for(paths)  # the same number of calls in both arms
                arms = {"step": _repeated(step, n), "sdpa_paths": _repeated(paths, n)}
                times: dict[str, list[float]] = {a: [] for a in arms}
                for i in range(rounds):  # alternate which arm runs first
                    for a in list(arms)[:: 1 if i % 2 == 0 else -1]:
                        times[a].append(_cpu_time(arms[a]))
            r = [x / y for x, y in zip(times["step"], times["sdpa_paths"])]
            print(
                f"decoding step B={b} H={h}/{hkv} Lk={lk} ({b * h * lk} scores): step/sdpa_paths "
                f"{statistics.median(r):.2f} [{min(r):.2f}, {max(r):.2f}]"
            )
    finally:
        dd.DECODE_MIN_SCORES = saved


def nmt_decoding(rounds: int) -> None:
    """Whole NMT decoding (the bench model): the weights-first step on vs off, paired."""
    from gpam.bench.models import ModelBenchConfig, _nmt_model

    cfg = ModelBenchConfig(attentions=("dagpam",))
    model = _nmt_model(cfg, "dagpam", torch.device("cpu"))
    src = torch.randint(4, cfg.vocab - 1, (cfg.nmt_batch, cfg.src_len))
    for kind, beam in (("greedy", 1), ("beam 4", cfg.beam_size)):

        def decode(on: bool, beam: int = beam) -> list[list[int]]:
            dd.DECODE_DEVICES = CPU if on else NONE
            if beam == 1:
                return model.greedy_decode(src, bos_id=1, eos_id=cfg.vocab - 1, max_len=24)
            return model.beam_search(
                src, bos_id=1, eos_id=cfg.vocab - 1, beam_size=beam, max_len=24
            )

        same = decode(True) == decode(False)
        times: dict[str, list[float]] = {"step": [], "sdpa_paths": []}
        for i in range(rounds):
            for on in (True, False)[:: 1 if i % 2 == 0 else -1]:
                times["step" if on else "sdpa_paths"].append(_cpu_time(lambda on=on: decode(on)))
        r = [x / y for x, y in zip(times["step"], times["sdpa_paths"])]
        q1, med, q3 = statistics.quantiles(r, n=4)
        print(
            f"NMT {kind} decoding: step {statistics.median(times['step']) * 1e3:.1f} ms, "
            f"sdpa_paths {statistics.median(times['sdpa_paths']) * 1e3:.1f} ms; step/sdpa_paths "
            f"{med:.3f} [{q1:.3f}, {q3:.3f}]; same tokens: {same}"
        )


def _alternating(arms: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """CPU seconds per round of two arms, after a warm-up call each, alternating which is first."""
    for fn in arms.values():
        fn()
    times: dict[str, list[float]] = {a: [] for a in arms}
    for i in range(rounds):
        for a in list(arms)[:: 1 if i % 2 == 0 else -1]:
            times[a].append(_cpu_time(arms[a]))
    return times


def paired_heads(rounds: int) -> None:
    """The one-GEMM query's pairs of heads: one SDPA call vs two, alone and in an LM step."""
    from gpam.bench.models import ModelBenchConfig
    from gpam.models import LMConfig, TransformerLM

    saved = dg.PAIRS_ONE_CALL_DEVICES
    try:
        for length in (256, 1024, 2048):
            g = torch.Generator().manual_seed(0)
            base = torch.randn(2, length, 8, 2, 64, generator=g).requires_grad_()
            k, v = (torch.randn(2, 8, length, 64, generator=g).requires_grad_() for _ in range(2))
            go = torch.randn(2, 8, length, 64, generator=g)

            def run(devices: frozenset, base: torch.Tensor = base, k=k, v=v, go=go) -> None:  # type: ignore[no-untyped-def]
                dg.PAIRS_ONE_CALL_DEVICES = devices
                pairs = base.permute(0, 2, 3, 1, 4).flatten(1, 2)  # as the layer lays them out
                dg.dagpam_pairs(pairs, k, v, lam_neg=0.5, is_causal=True).backward(go)

            t = _alternating({"one_call": lambda: run(CPU), "two_calls": lambda: run(NONE)}, rounds)
            _report(f"pairs causal L={length}", t, [("one_call", "two_calls")])
        cfg = ModelBenchConfig()
        for tokens in (64, 256):
            torch.manual_seed(0)
            model = TransformerLM(LMConfig(
                vocab_size=cfg.vocab, d_model=cfg.d_model, n_layers=cfg.n_layers,
                n_heads=cfg.n_heads, max_len=tokens, dropout=0.0, attention="dagpam",
            ))  # fmt: skip
            ids = torch.randint(0, cfg.vocab, (cfg.lm_batch, tokens + 1))

            def step(devices: frozenset, model=model, ids=ids) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
                dg.PAIRS_ONE_CALL_DEVICES = devices
                logits = model(ids[:, :-1]).reshape(-1, cfg.vocab)
                loss = F.cross_entropy(logits, ids[:, 1:].reshape(-1))
                return torch.autograd.grad(loss, list(model.parameters()))

            diff = max(float((a - b).abs().max()) for a, b in zip(step(CPU), step(NONE)))
            t = _alternating(
                {"one_call": lambda: step(CPU), "two_calls": lambda: step(NONE)}, rounds
            )
            _report(
                f"LM step T={tokens} (max grad diff {diff:.1e})", t, [("one_call", "two_calls")]
            )
    finally:
        dg.PAIRS_ONE_CALL_DEVICES = saved


def main(rounds: int = 15, only: str | None = None) -> None:
    torch.set_num_threads(1)
    saved = dg.ONE_CALL_DEVICES, dg.FOLD_DEVICES, dd.DECODE_DEVICES
    try:
        parts = {
            "decode": decode_steps, "nmt": nmt_decoding, "fold": folded_rows,
            "causal": causal_calls, "pairs": paired_heads,
        }  # fmt: skip
        for name, part in parts.items():
            if only in (None, name):
                part(rounds)
    finally:
        _set_paths(*saved)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rounds", nargs="?", type=int, default=15)
    parser.add_argument(
        "--only", choices=("decode", "nmt", "fold", "causal", "pairs"), default=None
    )
    args = parser.parse_args()
    main(args.rounds, args.only)
