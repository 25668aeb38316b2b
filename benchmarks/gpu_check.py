"""One-command GPU check: every variant and the fused kernel against float64, timed against SDPA.

    python benchmarks/gpu_check.py --out gpu_check.json          # on a CUDA machine
    python benchmarks/gpu_check.py --cpu --out smoke.json        # tiny smoke run on CPU (tests)

For each variant of ``gpam.VARIANTS`` (through ``gpam.functional.attention``) and each dtype
(float32, bfloat16, float16), causal or not, with and without grouped-query K/V heads, and
head_dim 64 and 128, the output and the gradients of the inputs are compared with a float64
reference: the same inputs in float64 on the CPU through the variant's explicit path
(``return_weights=True``; that path is itself checked against independent formulas by
``tests/test_functional_reference.py``). The fused Triton kernel (``gpam.kernels.dagpam_fused``)
is checked the same way where it can run, plus ``lam_neg = 0`` against softmax SDPA in float32
(no TF32). Then forward+backward time of every variant, of daGPAM's one-call and two-call SDPA
paths and of the fused kernel is measured against softmax SDPA, and the hot paths of issue 19
(``gpu_hot_paths.py``: one query GEMM vs two projections, its pairs of heads in one SDPA call vs
two, ``enable_gqa`` vs expanded K/V, eager vs ``torch.compile``, a decoding step's one SDPA call
over two query rows vs two calls, the weights-first step vs the SDPA paths), each as
an interleaved A/B with a one-line verdict. Everything goes to a JSON file; the exit status is 1
when any check fails, 2 when no GPU is present and ``--cpu`` is not given.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import gpam
from gpam.functional import attention, variant
from gpam.kernels import dagpam_fused, fused_dagpam_available
from gpam.kernels.dagpam_fused import interpreter_applies

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_hot_paths import run_hot_paths, verdicts  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: (atol, rtol) of outputs per dtype; gradients get twice these.
TOLERANCES = {
    torch.float32: (2e-4, 2e-3),
    torch.float16: (5e-3, 5e-3),
    torch.bfloat16: (4e-2, 4e-2),
}
#: variant keyword arguments (the rest take their defaults)
KWARGS: dict[str, dict[str, Any]] = {
    "dagpam": {"lam_neg": 0.5},
    "diff": {"lam": 0.3},
    "diff2": {"lam": 0.4},
}


def make_inputs(
    name: str, b: int, h: int, hkv: int, length: int, d: int, gen: torch.Generator
) -> dict[str, Tensor] | None:
    """float64 CPU inputs of ``attention(name, ...)``, or None for an unknown input layout."""

    def r(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    if name == "diff":  # pairs of sub-heads (2i, 2i+1) of q and k; v of width 2d per head pair
        return {"q": r(b, 2 * h, length, d), "k": r(b, 2 * hkv, length, d),
                "v": r(b, hkv, length, 2 * d)}  # fmt: skip
    # every other variant in the layout of its registry example (daGPAM's q_neg, diff2's 2H
    # query heads, ...); its float settings come from KWARGS
    q, q_neg = r(b, h, length, d), r(b, h, length, d)
    (q, k, v), extra = variant(name).example(q, q_neg, r(b, hkv, length, d),
                                             r(b, hkv, length, d), 0.5)  # fmt: skip
    return {"q": q, "k": k, "v": v, **{n: t for n, t in extra.items() if isinstance(t, Tensor)}}


def _call(name: str, x: dict[str, Tensor], causal: bool, weights: bool = False) -> Tensor:
    args = {n: t for n, t in x.items() if n not in ("q", "k", "v")}
    out = attention(name, x["q"], x["k"], x["v"], is_causal=causal, return_weights=weights,
                    **args, **KWARGS.get(name, {}))  # fmt: skip
    return out[0] if isinstance(out, tuple) else out


def _grads(fn: Any, x: dict[str, Tensor], grad: Tensor | None = None) -> tuple[Tensor, list]:
    xs = {n: t.detach().requires_grad_() for n, t in x.items()}
    out = fn(xs)
    g = torch.randn_like(out) if grad is None else grad.to(out)
    return out, [out.detach(), g, *torch.autograd.grad(out, list(xs.values()), g)]


def _err(got: Tensor, want: Tensor, atol: float, rtol: float) -> tuple[float, bool]:
    """(max |got - want| / (atol + rtol |want|), finite and <= 1)."""
    diff = (got.double().cpu() - want).abs()
    ratio = float((diff / (atol + rtol * want.abs())).max()) if diff.numel() else 0.0
    return ratio, bool(torch.isfinite(got).all()) and ratio <= 1.0


def _compare(label: dict, fn_dev: Any, fn_ref: Any, x64: dict, dev: str, dtype) -> dict:
    atol, rtol = TOLERANCES[dtype]
    x64 = {n: t.to(dtype).double() for n, t in x64.items()}  # the inputs the device sees, exactly
    _, ref = _grads(fn_ref, x64)
    xd = {n: t.to(dev, dtype) for n, t in x64.items()}
    _, got = _grads(fn_dev, xd, grad=ref[1])
    out_ratio, out_ok = _err(got[0], ref[0], atol, rtol)
    grad_ratio, grads_ok = 0.0, True
    for g, w in zip(got[2:], ref[2:]):
        r, ok = _err(g, w, 2 * atol, 2 * rtol)
        grad_ratio, grads_ok = max(grad_ratio, r), grads_ok and ok
    return {**label, "dtype": str(dtype).replace("torch.", ""), "output_error_over_tol": out_ratio,
            "grad_error_over_tol": grad_ratio, "ok": out_ok and grads_ok}  # fmt: skip


def _fused_fn(causal: bool, lam: float = 0.5):
    def run(x: dict[str, Tensor]) -> Tensor:
        return dagpam_fused(x["q"], x["q_neg"], x["k"], x["v"], 1.0 + lam, lam, causal, None)

    return run


def _fused_ok(q: Tensor, k: Tensor) -> bool:
    return fused_dagpam_available(q, k) or interpreter_applies(q)


def run_checks(dev: str, dtypes: list, head_dims: list, length: int, b: int, h: int) -> list:
    """Every variant (and the fused kernel) x dtype x causal x GQA x head_dim vs float64."""
    results = []
    gen = torch.Generator().manual_seed(0)
    for d in head_dims:
        for hkv in (h, h // 2):
            for causal in (False, True):
                for name in gpam.VARIANTS:
                    x64 = make_inputs(name, b, h, hkv, length, d, gen)
                    label = {"what": name, "head_dim": d, "kv_heads": hkv, "heads": h,
                             "causal": causal, "length": length}  # fmt: skip
                    if x64 is None:
                        results.append({**label, "ok": True, "skipped": "unknown input layout"})
                        continue
                    ref_fn = lambda x, n=name, c=causal: _call(n, x, c, weights=True)  # noqa: E731
                    dev_fn = lambda x, n=name, c=causal: _call(n, x, c)  # noqa: E731
                    for dtype in dtypes:
                        results.append(_compare(label, dev_fn, ref_fn, x64, dev, dtype))
                    if name == "dagpam":
                        results += _check_fused(label, x64, dev, dtypes, causal)
    return results


def _check_fused(label: dict, x64: dict, dev: str, dtypes: list, causal: bool) -> list:
    out = []
    ref_fn = lambda x: _call("dagpam", x, causal, weights=True)  # noqa: E731
    for dtype in dtypes:
        q, k = (x64[n].to(dev, dtype) for n in ("q", "k"))
        if not _fused_ok(q, k):
            continue
        out.append(_compare({**label, "what": "dagpam_fused"}, _fused_fn(causal), ref_fn, x64,
                            dev, dtype))  # fmt: skip
        if dtype == torch.float32:  # lam_neg = 0 is softmax: no TF32 in the kernel's dots
            xd = {n: t.to(dev, dtype) for n, t in x64.items()}
            got = _fused_fn(causal, 0.0)(xd)
            rep = q.shape[1] // k.shape[1]
            kx, vx = (xd[n].repeat_interleave(rep, 1) for n in ("k", "v"))
            want = F.scaled_dot_product_attention(xd["q"], kx, vx, is_causal=causal)
            err = float((got - want).abs().max())
            out.append({**label, "what": "dagpam_fused lam_neg=0 vs sdpa", "dtype": "float32",
                        "max_abs_diff": err, "ok": err <= 1e-5})  # fmt: skip
    return out


def _sync(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn: Any, dev: str, repeats: int) -> float:
    """Median seconds of ``fn()`` (forward + backward) over ``repeats`` after one warm-up."""
    fn()
    _sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_timings(dev: str, dtype, lengths: list, b: int, h: int, d: int, repeats: int) -> list:
    """Forward+backward time of every variant, daGPAM's SDPA paths and the fused kernel."""
    import gpam.functional.dagpam as dg

    results = []
    gen = torch.Generator().manual_seed(1)
    for length in lengths:
        methods: dict[str, Any] = {}
        sd = {n: t.to(dev, dtype).requires_grad_() for n, t in
              make_inputs("softmax", b, h, h, length, d, gen).items()}  # fmt: skip
        methods["sdpa"] = lambda x=sd: F.scaled_dot_product_attention(
            x["q"], x["k"], x["v"], is_causal=True).sum().backward()  # fmt: skip
        for name in gpam.VARIANTS:
            if name not in gpam.functional.QUADRATIC or length <= 4096:
                x64 = make_inputs(name, b, h, h, length, d, gen)
                if x64 is not None:
                    xd = {n: t.to(dev, dtype).requires_grad_() for n, t in x64.items()}
                    methods[name] = lambda n=name, x=xd: _call(n, x, True).sum().backward()
        xd = {n: t.to(dev, dtype).requires_grad_() for n, t in
              make_inputs("dagpam", b, h, h, length, d, gen).items()}  # fmt: skip

        def dagpam_with(devices: frozenset, x: dict = xd) -> None:
            saved, dg.ONE_CALL_DEVICES = dg.ONE_CALL_DEVICES, devices
            try:
                _call("dagpam", x, True).sum().backward()
            finally:
                dg.ONE_CALL_DEVICES = saved

        methods["dagpam_1call"] = lambda: dagpam_with(frozenset({torch.device(dev).type}))
        methods["dagpam_2call"] = lambda: dagpam_with(frozenset())
        if _fused_ok(xd["q"], xd["k"]):
            methods["dagpam_fused"] = lambda x=xd: _fused_fn(True)(x).sum().backward()
        base = _time(methods["sdpa"], dev, repeats)
        for name, fn in methods.items():
            t = base if name == "sdpa" else _time(fn, dev, repeats)
            results.append({"method": name, "length": length, "dtype": str(dtype).replace(
                "torch.", ""), "fwdbwd_ms": 1e3 * t, "x_sdpa": t / base})  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="gpu_check.json", help="JSON file to write")
    p.add_argument("--cpu", action="store_true", help="tiny smoke run on CPU (no GPU claims)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtypes", default=None, help="comma list (default float32,bfloat16,float16)")
    p.add_argument("--head-dims", default=None, help="comma list (default 64,128)")
    p.add_argument("--length", type=int, default=None, help="sequence length of the checks")
    p.add_argument("--time-lengths", default=None, help="comma list (default 1024,4096)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--compile-backend", default=None,
                   help="torch.compile backend of the hot-path timing (default inductor; "
                   "--cpu: eager, to keep the smoke run short)")  # fmt: skip
    a = p.parse_args(argv)
    if a.cpu:
        dev, dtypes, dims, length, lengths, reps = "cpu", "float32,bfloat16", "16", 12, "32", 1
    else:
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA GPU here; it checks the GPU paths. Use --cpu for a tiny "
                  "smoke run of the script itself.", file=sys.stderr)  # fmt: skip
            return 2
        dev, dtypes, dims, length, lengths, reps = a.device, None, "64,128", 256, "1024,4096", 10
    dts = [DTYPES[s] for s in (a.dtypes or dtypes or ",".join(DTYPES)).split(",")]
    head_dims = [int(s) for s in (a.head_dims or dims).split(",")]
    time_lengths = [int(s) for s in (a.time_lengths or lengths).split(",")]
    length = a.length or length
    reps = a.repeats or reps
    checks = run_checks(dev, dts, head_dims, length, b=2, h=4)
    timing_dtype = torch.float32 if a.cpu else torch.bfloat16
    timings = run_timings(dev, timing_dtype, time_lengths, 2, 8, head_dims[0], reps)
    backend = a.compile_backend or ("eager" if a.cpu else "inductor")
    hot = run_hot_paths(dev, timing_dtype, a.cpu, reps, backend)
    failed = [c for c in checks if not c["ok"]]
    report = {
        "device": torch.cuda.get_device_name(dev) if dev.startswith("cuda") else "cpu (smoke)",
        "capability": list(torch.cuda.get_device_capability(dev))
        if dev.startswith("cuda")
        else None,
        "torch": torch.__version__,
        "gpam": gpam.__version__ if hasattr(gpam, "__version__") else None,
        "triton_interpret": os.environ.get("TRITON_INTERPRET"),
        "tolerances": {str(k).replace("torch.", ""): v for k, v in TOLERANCES.items()},
        "checks": checks,
        "timings": timings,
        "hot_paths": hot,
        "verdicts": verdicts(hot),
        "failed": len(failed),
    }
    Path(a.out).write_text(json.dumps(report, indent=1, default=float))
    for c in failed:
        print("FAILED", {k: v for k, v in c.items() if k != "ok"})
    fused = sum(c["what"].startswith("dagpam_fused") for c in checks)
    print(f"gpu_check: {len(checks) - len(failed)}/{len(checks)} checks passed "
          f"({fused} of the fused kernel) on {report['device']}; wrote {a.out}")  # fmt: skip
    for t in timings:
        print(f"  L={t['length']:>6} {t['method']:<14} {t['fwdbwd_ms']:9.2f} ms  "
              f"{t['x_sdpa']:.2f}x sdpa")  # fmt: skip
    for line in report["verdicts"]:
        print("  " + line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
