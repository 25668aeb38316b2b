"""Attention-core benchmark: time (forward, forward+backward) and peak memory per method.

All methods of one configuration (L, heads, head_dim, dtype, causal, pass) are timed
round-robin in the same loop, so each ratio to ``sdpa`` is a median of paired per-round ratios.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from tqdm import tqdm

from gpam.bench.measure import CLOCKS, interleaved_times, peak_memory_bytes, summarize
from gpam.bench.methods import all_methods, get_method, method_available, quadratic

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PASSES = ("fwd", "fwdbwd")


@dataclass
class CoreBenchConfig:
    """What to measure. Time: every combination of lengths x dtypes x causal x passes with
    (batch, heads, head_dim); memory: ``memory_lengths`` with (memory_batch, memory_heads).
    ``kv_heads`` / ``memory_kv_heads``: key/value heads shared by the query heads
    (grouped-query attention; None = as many as query heads), each dividing its ``heads``."""

    lengths: Sequence[int] = (256, 512, 1024, 2048)
    batch: int = 2
    heads: int = 8
    kv_heads: int | None = None
    head_dim: int = 64
    dtypes: Sequence[str] = ("float32",)
    causal: Sequence[bool] = (True,)
    passes: Sequence[str] = PASSES
    methods: Sequence[str] = field(default_factory=all_methods)
    repeats: int = 5
    warmup: int = 1
    lam: float = 0.5
    memory_lengths: Sequence[int] = (1024, 2048, 4096, 8192)
    memory_batch: int = 1
    memory_heads: int = 2
    memory_kv_heads: int | None = None
    max_quadratic_gb: float = 6.0
    device: str = "cpu"
    clock: str = "wall"
    seed: int = 0

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the bad field."""
        for name in ("batch", "heads", "head_dim", "repeats", "memory_batch", "memory_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name, of in (("kv_heads", "heads"), ("memory_kv_heads", "memory_heads")):
            value, total = getattr(self, name), getattr(self, of)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1 or total % value:
                raise ValueError(
                    f"{name} must be a positive divisor of {of} ({total}) or None, got {value!r}"
                )
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        for name in ("lengths", "memory_lengths"):
            values = list(getattr(self, name))
            if any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in values):
                raise ValueError(f"{name} must be positive integers, got {values!r}")
        for d in self.dtypes:
            if d not in DTYPES:
                raise ValueError(f"dtypes must be among {', '.join(DTYPES)}; got {d!r}")
        for p in self.passes:
            if p not in PASSES:
                raise ValueError(f"passes must be among {', '.join(PASSES)}; got {p!r}")
        for m in self.methods:
            get_method(m)
        if "sdpa" not in self.methods:
            raise ValueError("methods must include 'sdpa' (the baseline of every ratio)")
        if "diff" in self.methods and (self.heads % 2 or self.memory_heads % 2):
            raise ValueError("heads and memory_heads must be even for 'diff' (pairs of sub-heads)")
        if not self.lam >= 0:
            raise ValueError(f"lam must be >= 0, got {self.lam}")
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {', '.join(CLOCKS)}; got {self.clock!r}")
        torch.device(self.device)


def _inputs(
    b: int,
    h: int,
    hkv: int | None,
    length: int,
    d: int,
    dtype: torch.dtype,
    device: torch.device,
    grad: bool,
) -> list[torch.Tensor]:
    """``[q, q_neg, k, v]``: queries (B, H, L, D), keys and values (B, Hkv, L, D)."""
    shapes = [(b, h, length, d)] * 2 + [(b, h if hkv is None else hkv, length, d)] * 2
    return [torch.randn(s, dtype=dtype, device=device).requires_grad_(grad) for s in shapes]


def _call(
    name: str, xs: list[torch.Tensor], causal: bool, lam: float, backward: bool
) -> Callable[[], object]:
    fn = get_method(name)
    if not backward:

        def fwd() -> object:
            with torch.no_grad():
                return fn(*xs, causal, lam)

        return fwd
    grads: list[torch.Tensor] = []  # made on the first call, with the output's shape

    def fwdbwd() -> object:
        for x in xs:
            x.grad = None
        out = fn(*xs, causal, lam)
        if not grads:
            grads.append(torch.randn_like(out))
        out.backward(grads[0])
        return None

    return fwdbwd


def quadratic_bytes(b: int, h: int, length: int, dtype: torch.dtype) -> int:
    """Bytes of one (B, H, L, L) matrix."""
    return b * h * length * length * torch.tensor([], dtype=dtype).element_size()


def time_core(cfg: CoreBenchConfig, progress: bool = True) -> list[dict]:
    """Rows ``{L, dtype, causal, pass, method, median_s, ratio, ...}`` of the timing grid."""
    device = torch.device(cfg.device)
    rows: list[dict] = []
    grid = [
        (length, dt, causal, p)
        for dt in cfg.dtypes
        for causal in cfg.causal
        for p in cfg.passes
        for length in cfg.lengths
    ]
    for length, dt, causal, p in tqdm(grid, desc="core time", disable=not progress):
        torch.manual_seed(cfg.seed)
        dtype = DTYPES[dt]
        xs = _inputs(
            cfg.batch, cfg.heads, cfg.kv_heads, length, cfg.head_dim, dtype, device, p == "fwdbwd"
        )
        names = [m for m in cfg.methods if method_available(m, xs[0])]
        fns = {m: _call(m, xs, causal, cfg.lam, p == "fwdbwd") for m in names}
        times = interleaved_times(
            fns, repeats=cfg.repeats, warmup=cfg.warmup, device=device, clock=cfg.clock
        )
        for m, stats in summarize(times, "sdpa").items():
            row = {"L": length, "dtype": dt, "causal": causal, "pass": p, "method": m}
            rows.append({**row, "kv_heads": xs[2].shape[1], **stats})
    return rows


def memory_core(cfg: CoreBenchConfig, progress: bool = True) -> list[dict]:
    """Rows ``{L, method, peak_bytes, ratio}`` of forward+backward peak memory (first dtype,
    first causal setting); quadratic methods beyond ``max_quadratic_gb`` are skipped."""
    device = torch.device(cfg.device)
    dt, causal = cfg.dtypes[0], cfg.causal[0]
    dtype = DTYPES[dt]
    rows: list[dict] = []
    b, h, hkv, d = cfg.memory_batch, cfg.memory_heads, cfg.memory_kv_heads, cfg.head_dim
    warm = _inputs(1, h, hkv, 64, d, dtype, device, True)
    for m in cfg.methods:  # first calls allocate thread pools and caches: keep them out
        if method_available(m, warm[0]):
            _call(m, warm, causal, cfg.lam, True)()
    grid = [(length, m) for length in cfg.memory_lengths for m in cfg.methods]
    for length, m in tqdm(grid, desc="core memory", disable=not progress):
        xs = _inputs(b, h, hkv, length, d, dtype, device, True)
        if not method_available(m, xs[0]):
            continue
        row = {"L": length, "dtype": dt, "causal": causal, "method": m, "batch": b, "heads": h}
        row["kv_heads"] = xs[2].shape[1]
        if quadratic(m) and 6 * quadratic_bytes(b, h, length, dtype) > cfg.max_quadratic_gb * 2**30:
            rows.append({**row, "peak_bytes": None, "skipped": "over max_quadratic_gb"})
            continue
        fn = _call(m, xs, causal, cfg.lam, True)
        rows.append({**row, "peak_bytes": peak_memory_bytes(fn, device)})
        del fn, xs
    base = {r["L"]: r["peak_bytes"] for r in rows if r["method"] == "sdpa"}
    for r in rows:
        ref = base.get(r["L"])
        r["ratio"] = r["peak_bytes"] / ref if r["peak_bytes"] is not None and ref else None
        r["bytes_per_token"] = r["peak_bytes"] / r["L"] if r["peak_bytes"] is not None else None
    return rows


def run_core_bench(cfg: CoreBenchConfig, progress: bool = True) -> dict:
    """Time and memory of every method; a JSON-safe dict ``{config, time, memory, env}``."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    return {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "time": time_core(cfg, progress) if cfg.lengths else [],
        "memory": memory_core(cfg, progress) if cfg.memory_lengths else [],
        "env": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": cfg.device,
            "clock": cfg.clock,
            "cuda": torch.cuda.get_device_name()
            if torch.device(cfg.device).type == "cuda"
            else None,
        },
    }
