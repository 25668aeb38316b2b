"""Compile the fused daGPAM Triton kernels for CUDA targets ahead of time, without a GPU.

    python benchmarks/kernel_compile_check.py --out kernel_compile.json
    python benchmarks/kernel_compile_check.py --targets 80 --dtypes float32 --kernels fwd

Triton lowers each kernel to PTX and, with the ``ptxas`` its wheel ships, to a cubin for every
``--targets`` compute capability (no driver or device is needed), for each dtype, head_dim,
causal flag and grouped-query factor asked for. This catches compile errors that Triton's CPU
interpreter cannot see, and reads the PTX: float32 kernels must not contain TF32 instructions
(``tl.dot`` runs in IEEE precision), fp16/bf16 kernels should use tensor-core MMA. It proves
nothing about run-time results or speed on a GPU. Exit status 1 when a compile or a check fails.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

PTR = {"float32": "*fp32", "bfloat16": "*bf16", "float16": "*fp16"}
KERNELS = {"fwd": "_fwd_kernel", "dkdv": "_bwd_dkdv_kernel", "dq": "_bwd_dq_kernel"}
CONSTEXPRS = ("CAUSAL", "BLOCK_M", "BLOCK_N", "D", "GROUP", "PREC")
FP32_ARGS = ("LSEP", "LSEN", "DELP", "DELN")
FLOAT_SCALARS = ("qk_scale", "sm_scale")
INT_ARGS = ("H", "LQ", "LK", "BH0")


def signature(fn: Any, dtype: str) -> dict[str, str]:
    """Triton signature of a kernel: tensors of ``dtype``, fp32 lse/delta, i32 ints."""
    sig = {}
    for name in fn.arg_names:
        if name in CONSTEXPRS:
            sig[name] = "constexpr"
        elif name in FP32_ARGS:
            sig[name] = "*fp32"
        elif name in FLOAT_SCALARS:
            sig[name] = "fp32"
        elif name in INT_ARGS or name.startswith("s"):
            sig[name] = "i32"
        else:
            sig[name] = PTR[dtype]
    return sig


def compile_one(kernel: str, dtype: str, cc: int, d: int, causal: bool, group: int) -> dict:
    """Compile one kernel configuration; returns what was found in its PTX."""
    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from gpam.kernels import _triton_dagpam as kern
    from gpam.kernels.dagpam_fused import _precision

    fn = getattr(kern, KERNELS[kernel])
    bm, bn = (64, 32) if dtype == "float32" or d > 64 else (64, 64)
    const = {"CAUSAL": causal, "BLOCK_M": bm, "BLOCK_N": bn, "D": d, "GROUP": group,
             "PREC": _precision(getattr(torch, dtype))}  # fmt: skip
    t0 = time.perf_counter()
    compiled = triton.compile(
        ASTSource(fn, signature(fn, dtype), const),
        target=GPUTarget("cuda", cc, 32),
        options={"num_warps": 4, "num_stages": 2},
    )
    ptx = compiled.asm["ptx"]
    tf32 = len(re.findall(r"tf32", ptx))
    mma = len(re.findall(r"\bmma\.sync|wgmma\.mma_async", ptx))
    ok = tf32 == 0 if dtype == "float32" else mma > 0
    return {"kernel": kernel, "dtype": dtype, "sm": cc, "head_dim": d, "causal": causal,
            "group": group, "cubin_bytes": len(compiled.asm["cubin"]), "tf32_in_ptx": tf32,
            "mma_in_ptx": mma, "seconds": round(time.perf_counter() - t0, 1), "ok": ok}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None, help="JSON file to write")
    p.add_argument("--targets", default="80,90", help="compute capabilities, e.g. 80,90")
    p.add_argument("--dtypes", default="float32,bfloat16,float16")
    p.add_argument("--kernels", default="fwd,dkdv,dq")
    p.add_argument("--head-dims", default="64,128")
    p.add_argument("--causal", default="true", help="true, false or true,false")
    p.add_argument("--groups", default="2", help="grouped-query factors H / Hkv")
    a = p.parse_args(argv)
    results = []
    for cc in (int(x) for x in a.targets.split(",")):
        for dtype in a.dtypes.split(","):
            for d in (int(x) for x in a.head_dims.split(",")):
                for causal in (x == "true" for x in a.causal.split(",")):
                    for group in (int(x) for x in a.groups.split(",")):
                        for kernel in a.kernels.split(","):
                            try:
                                r = compile_one(kernel, dtype, cc, d, causal, group)
                            except Exception as err:  # noqa: BLE001 - report every failure
                                r = {"kernel": kernel, "dtype": dtype, "sm": cc, "head_dim": d,
                                     "causal": causal, "group": group, "ok": False,
                                     "error": f"{type(err).__name__}: {err}"[:2000]}  # fmt: skip
                            results.append(r)
                            print(json.dumps(r), flush=True)
    failed = sum(not r["ok"] for r in results)
    if a.out:
        Path(a.out).write_text(json.dumps({"results": results, "failed": failed}, indent=1))
    print(f"kernel_compile_check: {len(results) - failed}/{len(results)} compiled and passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
