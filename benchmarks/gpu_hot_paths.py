"""Hot-path timings of ``benchmarks/gpu_check.py`` (issue 19 item 6): each path A/B, one verdict.

* ``fused_query``: a daGPAM ``MultiheadAttention`` (``neg_query="linear"``) with Q_pos and Q_neg
  from one GEMM (``gpam.nn.fused_query``) vs two projections (``q_proj``, then the per-head map).
* ``pairs``: the same layer's pairs of query heads as one SDPA call over 2H heads
  (``gpam.functional.dagpam.dagpam_pairs`` on the device types in ``PAIRS_ONE_CALL_DEVICES``,
  CPU by default) vs split into two calls.
* ``gqa``: softmax and daGPAM with Hkv < H K/V heads read in place (SDPA's ``enable_gqa``,
  ``gpam.functional._gqa``) vs K/V copied to H heads first (``expand_kv``, inside the timed call).
* ``compile``: a small ``TransformerLM`` forward + backward, eager vs ``torch.compile``.
* ``fold``: a daGPAM decoding step (one query row over a cache, no grad, queries laid out as the
  one-GEMM query leaves them): one SDPA call over the two query rows (``folded_query``, on the
  device types in ``FOLD_DEVICES``, CPU by default) vs two calls (the weights-first step off).
* ``decode_step``: the same step weights first (``gpam.functional._decode``: both maps' scores
  in one product, one value product of the mixed weights; on the device types in
  ``DECODE_DEVICES``, CPU by default) vs the SDPA paths (the fold where it applies).

Every pair runs interleaved (A B A B ...) after untimed warm-up calls; CUDA events on CUDA,
``time.perf_counter`` on CPU. A section holds the medians (ms), the median of per-round ratios
B/A and the largest output difference between A and B (they compute the same thing).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

import gpam.functional._decode as dd
import gpam.functional.dagpam as dg
from gpam.functional import attention
from gpam.functional._checks import expand_kv
from gpam.models import LMConfig, TransformerLM
from gpam.nn import MultiheadAttention

#: |ratio - 1| below this is reported as "the same"
SAME_WITHIN = 0.03
#: the attentions of the GQA and compile sections
ATTENTIONS = ("softmax", "dagpam")


def _once(fn: Callable[[], object], dev: str) -> float:
    """Seconds of one call: CUDA events on CUDA, ``perf_counter`` elsewhere."""
    if dev.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def paired(fns: dict[str, Callable[[], object]], dev: str, repeats: int, warmup: int) -> dict:
    """Interleaved timing of two functions ``{a: fa, b: fb}``: medians and the b/a ratio."""
    (a, fa), (b, fb) = fns.items()
    for _ in range(warmup):
        fa(), fb()
    if dev.startswith("cuda"):
        torch.cuda.synchronize(dev)
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(_once(fa, dev))
        tb.append(_once(fb, dev))
    ratio = statistics.median(y / x for x, y in zip(ta, tb))
    return {f"{a}_ms": 1e3 * statistics.median(ta), f"{b}_ms": 1e3 * statistics.median(tb),
            f"{b}_over_{a}": ratio, "repeats": repeats, "warmup": warmup}  # fmt: skip


def verdict(label: str, a: str, b: str, ratio: float) -> str:
    """One line: which of ``a`` and ``b`` was faster by the median per-round ratio b/a."""
    if abs(ratio - 1.0) < SAME_WITHIN:
        return f"{label}: {a} and {b} the same within {SAME_WITHIN:.0%} ({b}/{a} = {ratio:.2f})"
    faster, x = (a, ratio) if ratio > 1 else (b, 1 / ratio)
    return f"{label}: {faster} faster, {x:.2f}x ({b}/{a} = {ratio:.2f})"


def _fwd_bwd(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    return lambda: fn().float().sum().backward()


def _maxdiff(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x.detach().float() - y.detach().float()).abs().max())


def fused_query(dev: str, dtype: Any, shape: dict, repeats: int, warmup: int) -> dict:
    """daGPAM layer forward+backward: one query GEMM vs two projections (same parameters)."""
    torch.manual_seed(0)
    e, h, b, length = shape["embed"], shape["heads"], shape["batch"], shape["length"]
    one = MultiheadAttention(e, h, attention="dagpam", neg_query="linear", device=dev, dtype=dtype)
    two = MultiheadAttention(e, h, attention="dagpam", neg_query="linear", device=dev, dtype=dtype)
    two.load_state_dict(one.state_dict())
    two.variant.fused_query = lambda weight, bias: None  # type: ignore[method-assign]
    x = torch.randn(b, length, e, device=dev, dtype=dtype)
    res = paired({"one_gemm": _fwd_bwd(lambda: one(x, is_causal=True)),
                  "two_projections": _fwd_bwd(lambda: two(x, is_causal=True))},
                 dev, repeats, warmup)  # fmt: skip
    with torch.no_grad():
        res["max_abs_diff"] = _maxdiff(one(x, is_causal=True), two(x, is_causal=True))
    res["verdict"] = verdict(
        "fused query", "one_gemm", "two_projections", res["two_projections_over_one_gemm"]
    )
    return {**shape, "dtype": str(dtype).replace("torch.", ""), **res}


def pairs(dev: str, dtype: Any, shape: dict, repeats: int, warmup: int) -> dict:
    """daGPAM layer forward+backward, causal: the one-GEMM query's pairs of heads in one SDPA
    call (``enable_gqa``) vs two calls, the same layer and input."""
    torch.manual_seed(0)
    e, h, b, length = shape["embed"], shape["heads"], shape["batch"], shape["length"]
    layer = MultiheadAttention(e, h, attention="dagpam", device=dev, dtype=dtype)
    x = torch.randn(b, length, e, device=dev, dtype=dtype)
    on, none = frozenset({torch.device(dev).type}), frozenset()

    def run(devices: frozenset[str]) -> torch.Tensor:
        with _paths(PAIRS_ONE_CALL_DEVICES=devices):
            return layer(x, is_causal=True)

    res = paired({"one_call": _fwd_bwd(lambda: run(on)), "two_calls": _fwd_bwd(lambda: run(none))},
                 dev, repeats, warmup)  # fmt: skip
    with torch.no_grad():
        res["max_abs_diff"] = _maxdiff(run(on), run(none))
    res["verdict"] = verdict("pairs", "one_call", "two_calls", res["two_calls_over_one_call"])
    return {**shape, "dtype": str(dtype).replace("torch.", ""), **res}


def gqa(dev: str, dtype: Any, shape: dict, repeats: int, warmup: int) -> list:
    """softmax and daGPAM forward+backward with Hkv < H: K/V in place vs expanded copies."""
    gen = torch.Generator().manual_seed(1)
    b, h, hkv, length, d = (shape[n] for n in ("batch", "heads", "kv_heads", "length", "head_dim"))

    def r(heads: int) -> torch.Tensor:
        return torch.randn(b, heads, length, d, generator=gen).to(dev, dtype).requires_grad_()

    q, q_neg, k, v = r(h), r(h), r(hkv), r(hkv)
    out = []
    for name in ATTENTIONS:
        kw = {"q_neg": q_neg, "lam_neg": 0.5} if name == "dagpam" else {}

        def call(expand: bool, n: str = name, kw: dict = kw) -> torch.Tensor:
            kk, vv = (expand_kv(k, h), expand_kv(v, h)) if expand else (k, v)
            return attention(n, q, kk, vv, is_causal=True, **kw)

        fns = {"enable_gqa": _fwd_bwd(lambda c=call: c(False)),
               "expanded": _fwd_bwd(lambda c=call: c(True))}  # fmt: skip
        res = paired(fns, dev, repeats, warmup)
        with torch.no_grad():
            res["max_abs_diff"] = _maxdiff(call(False), call(True))
        ratio = res["expanded_over_enable_gqa"]
        res["verdict"] = verdict(f"gqa {name}", "enable_gqa", "expanded", ratio)
        out.append({"attention": name, **shape, "dtype": str(dtype).replace("torch.", ""), **res})
    return out


def compiled_lm(dev: str, dtype: Any, shape: dict, repeats: int, warmup: int, backend: str) -> list:
    """TransformerLM forward + cross-entropy + backward, softmax and daGPAM: eager vs
    ``torch.compile(backend)`` (see :func:`_compile_pair`)."""
    return [_compile_pair(dev, dtype, shape, n, repeats, warmup, backend) for n in ATTENTIONS]


def _compile_pair(
    dev: str, dtype: Any, shape: dict, name: str, repeats: int, warmup: int, backend: str
) -> dict:
    """One attention's eager/compiled pair; ``compile_s`` is the wall time of the compiled
    model's first forward and backward (compilation)."""
    vocab, b, t = shape["vocab"], shape["batch"], shape["length"]
    torch.manual_seed(0)
    cfg = LMConfig(vocab_size=vocab, d_model=shape["d_model"], n_layers=shape["layers"],
                   n_heads=shape["heads"], max_len=t, dropout=0.0, attention=name)  # fmt: skip
    model = TransformerLM(cfg).to(dev)
    net = torch.compile(model, backend=backend)
    ids = torch.randint(0, vocab, (b, t + 1), device=dev)

    def loss(m: torch.nn.Module) -> torch.Tensor:
        with torch.autocast(torch.device(dev).type, dtype=dtype, enabled=dtype != torch.float32):
            logits = m(ids[:, :-1])
        return F.cross_entropy(logits.float().reshape(-1, vocab), ids[:, 1:].reshape(-1))

    t0 = time.perf_counter()
    loss(net).backward()
    if dev.startswith("cuda"):
        torch.cuda.synchronize(dev)
    compile_s = time.perf_counter() - t0
    fns = {"eager": lambda: loss(model).backward(), "compiled": lambda: loss(net).backward()}
    res = paired(fns, dev, repeats, warmup)
    model.zero_grad(set_to_none=True)  # (with grad on: no_grad would recompile)
    res["loss_diff"] = abs(float(loss(model)) - float(loss(net)))
    res["verdict"] = verdict(f"compile {name}", "eager", "compiled", res["compiled_over_eager"])
    return {"attention": name, **shape, "dtype": str(dtype).replace("torch.", ""),
            "backend": backend, "compile_s": compile_s, **res}  # fmt: skip


def _decoding_inputs(dev: str, dtype: Any, shape: dict, seed: int) -> tuple[torch.Tensor, ...]:
    """(q, q_neg, k, v) of a decoding step: one query row per head with its negative row next
    to it (as the one-GEMM query leaves them), keys of ``shape["kv_heads"]`` (default: all)."""
    gen = torch.Generator().manual_seed(seed)
    b, h, lk, d = (shape[n] for n in ("batch", "heads", "keys", "head_dim"))
    both = torch.randn(b, 1, h, 2, d, generator=gen).to(dev, dtype)
    q, q_neg = both.permute(3, 0, 2, 1, 4).unbind(0)
    hkv = shape.get("kv_heads", h)
    k, v = (torch.randn(b, hkv, lk, d, generator=gen).to(dev, dtype) for _ in range(2))
    return q, q_neg, k, v


@contextlib.contextmanager
def _paths(**settings: Any) -> Iterator[None]:
    """Set the daGPAM path switches (``FOLD_DEVICES``, ``FOLD_MIN_KEY_ROWS``,
    ``PAIRS_ONE_CALL_DEVICES`` of ``gpam.functional.dagpam``; ``DECODE_DEVICES``,
    ``DECODE_MIN_SCORES`` of ``_decode``) for one call, then restore them."""
    homes = {name: dd if name.startswith("DECODE_") else dg for name in settings}
    saved = {name: getattr(homes[name], name) for name in settings}
    for name, value in settings.items():
        setattr(homes[name], name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(homes[name], name, value)


def _step_pair(x: tuple, dev: str, repeats: int, warmup: int, arms: dict[str, dict]) -> dict:
    """Paired timing of ``dagpam_attention`` on the decoding inputs ``x`` under two settings of
    the path switches (``{arm: settings}``), no grad, with the largest output difference."""

    def call(settings: dict) -> torch.Tensor:
        with _paths(**settings):
            return dg.dagpam_attention(*x, lam_neg=0.5)

    (a, sa), (b, sb) = arms.items()
    with torch.no_grad():
        res = paired({a: lambda: call(sa), b: lambda: call(sb)}, dev, repeats, warmup)
        res["max_abs_diff"] = _maxdiff(call(sa), call(sb))
    return res


def fold(dev: str, dtype: Any, shape: dict, repeats: int, warmup: int) -> dict:
    """daGPAM decoding step without grad: the two query rows in one SDPA call vs two calls."""
    x = _decoding_inputs(dev, dtype, shape, seed=2)
    on, none = frozenset({torch.device(dev).type}), frozenset()
    # the smoke run's keys are fewer than the limit; the weights-first step off: SDPA alone
    common = {"FOLD_MIN_KEY_ROWS": 0, "DECODE_DEVICES": none}
    res = _step_pair(x, dev, repeats, warmup, {
        "one_call": {**common, "FOLD_DEVICES": on}, "two_calls": {**common, "FOLD_DEVICES": none},
    })  # fmt: skip
    res["verdict"] = verdict("fold", "one_call", "two_calls", res["two_calls_over_one_call"])
    return {**shape, "dtype": str(dtype).replace("torch.", ""), **res}


def decode_step(dev: str, dtype: Any, shape: dict, repeats: int, warmup: int) -> dict:
    """daGPAM decoding step without grad: weights first vs the SDPA paths (fold or two calls),
    in float32 whatever ``dtype`` is (the step runs in float32/float64 only)."""
    dtype = torch.float32
    x = _decoding_inputs(dev, dtype, shape, seed=3)
    on, none = frozenset({torch.device(dev).type}), frozenset()
    common = {"DECODE_MIN_SCORES": 0}  # the smoke run's scores are fewer than the limit
    res = _step_pair(x, dev, repeats, warmup, {
        "step": {**common, "DECODE_DEVICES": on}, "sdpa_paths": {**common, "DECODE_DEVICES": none},
    })  # fmt: skip
    res["verdict"] = verdict("decode_step", "step", "sdpa_paths", res["sdpa_paths_over_step"])
    return {**shape, "dtype": str(dtype).replace("torch.", ""), **res}


#: shapes of the GPU run and of the ``--cpu`` smoke run
SHAPES = {
    "gpu": {
        "fused_query": {"batch": 8, "length": 1024, "embed": 512, "heads": 8},
        "pairs": {"batch": 8, "length": 1024, "embed": 512, "heads": 8},
        "gqa": {"batch": 4, "heads": 8, "kv_heads": 2, "length": 2048, "head_dim": 64},
        "compile": dict(vocab=8000, d_model=256, layers=4, heads=4, batch=8, length=256),
        "fold": {"batch": 64, "heads": 8, "keys": 512, "head_dim": 64},
        "decode_step": {"batch": 64, "heads": 8, "kv_heads": 2, "keys": 512, "head_dim": 64},
    },
    "cpu": {
        "fused_query": {"batch": 2, "length": 16, "embed": 32, "heads": 4},
        "pairs": {"batch": 2, "length": 16, "embed": 32, "heads": 4},
        "gqa": {"batch": 1, "heads": 4, "kv_heads": 2, "length": 16, "head_dim": 8},
        "compile": {"vocab": 64, "d_model": 32, "layers": 1, "heads": 2, "batch": 2, "length": 16},
        "fold": {"batch": 2, "heads": 4, "keys": 8, "head_dim": 8},
        "decode_step": {"batch": 2, "heads": 4, "kv_heads": 2, "keys": 8, "head_dim": 8},
    },
}


def run_hot_paths(dev: str, dtype: Any, smoke: bool, repeats: int, backend: str) -> dict:
    """All six sections; ``smoke`` picks the tiny CPU shapes and one warm-up call."""
    shapes = SHAPES["cpu" if smoke else "gpu"]
    warmup = 1 if smoke else 3
    return {
        "fused_query": fused_query(dev, dtype, shapes["fused_query"], repeats, warmup),
        "pairs": pairs(dev, dtype, shapes["pairs"], repeats, warmup),
        "gqa": gqa(dev, dtype, shapes["gqa"], repeats, warmup),
        "compile": compiled_lm(dev, dtype, shapes["compile"], repeats, warmup, backend),
        "fold": fold(dev, dtype, shapes["fold"], repeats, warmup),
        "decode_step": decode_step(dev, dtype, shapes["decode_step"], repeats, warmup),
    }


def verdicts(hot: dict) -> list[str]:
    """The one-line verdicts of :func:`run_hot_paths`' sections, in order."""
    rows = [
        hot["fused_query"],
        hot["pairs"],
        *hot["gqa"],
        *hot["compile"],
        hot["fold"],
        hot["decode_step"],
    ]
    return [r["verdict"] for r in rows]
