"""Timing, peak-memory and FLOP measurement helpers shared by the core and model benchmarks.

Peak memory on CPU: the bytes allocated by the measured call through the c10 allocator, read
from ``torch.profiler`` memory records (``profile_memory=True``): every allocation (+) and free
(-) of the call is replayed in time order and the running maximum above the starting point is
the peak. This counts intermediate buffers inside fused kernels (e.g. SDPA's CPU flash kernel)
that never surface as Python tensors; it excludes memory alive before the call. On CUDA
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` is used instead.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = ("wall", "cpu")


def time_once(fn: Callable[[], object], device: torch.device, clock: str = "wall") -> float:
    """Seconds of one call of ``fn`` (device-synchronised).

    ``clock="wall"``: elapsed time. ``clock="cpu"``: CPU time of this process
    (``time.process_time``), which other processes on a shared machine barely disturb; with
    one torch thread it is the compute time (with several it sums over threads).
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}; got {clock!r}")
    now = time.perf_counter if clock == "wall" or device.type == "cuda" else time.process_time
    synchronize(device)
    t0 = now()
    fn()
    synchronize(device)
    return now() - t0


def interleaved_times(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int,
    device: torch.device,
    clock: str = "wall",
) -> dict[str, list[float]]:
    """Seconds per call for each function, measured round-robin (one call of each per round).

    Interleaving spreads machine drift evenly over the methods, so per-round ratios to a
    baseline are paired samples.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(time_once(fn, device, clock))
    return times


def summarize(times: dict[str, list[float]], base: str) -> dict[str, dict[str, float]]:
    """Median seconds and the median of per-round ratios to ``times[base]`` for each method."""
    out: dict[str, dict[str, float]] = {}
    for name, ts in times.items():
        ratios = [t / b for t, b in zip(ts, times[base])]
        out[name] = {
            "median_s": statistics.median(ts),
            "min_s": min(ts),
            "ratio": statistics.median(ratios),
            "ratio_of_medians": statistics.median(ts) / statistics.median(times[base]),
            "ratio_of_mins": min(ts) / min(times[base]),
        }
    return out


def peak_memory_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated while ``fn`` runs, above what was allocated before (see module doc)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - start)
    if device.type != "cpu":
        raise ValueError(f"device must be cpu or cuda for memory measurement, got {device}")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = [
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    ]
    records.sort()
    current = peak = 0
    for _, nbytes in records:
        current += nbytes
        peak = max(peak, current)
    return int(peak)


def _sdpa_cpu_fwd_flops(query: tuple, key: tuple, *args: object, **kw: object) -> int:
    # FlopCounterMode passes shapes (torch.Size), not tensors, to custom formulas.
    b, h, lq, d = query
    return 4 * b * h * lq * key[-2] * d


def _sdpa_cpu_bwd_flops(grad: tuple, query: tuple, key: tuple, *args: object, **kw: object) -> int:
    b, h, lq, d = query
    return 8 * b * h * lq * key[-2] * d


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of ``fn`` by ``torch.utils.flop_counter`` (matmuls; SDPA counted as full L x L).

    The CPU flash-attention ops are added to the counter's table (4*B*H*Lq*Lk*D forward, twice
    that backward, the same convention torch uses for the CUDA SDPA kernels).
    """
    aten = torch.ops.aten
    mapping = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_fwd_flops
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _sdpa_cpu_bwd_flops
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())
