"""Write a benchmark result as ``bench.json``, ``report.md`` and PNG plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gpam._io import atomic_write_json, atomic_write_text  # noqa: E402


def _mib(nbytes: float | None) -> str:
    return "skipped" if nbytes is None else f"{nbytes / 2**20:.1f}"


def _kv(kv_heads: int | None) -> str:
    """``", Hkv=n"`` for grouped key/value heads, else nothing."""
    return "" if kv_heads is None else f", Hkv={kv_heads} (key/value heads)"


def time_table(rows: list[dict]) -> str:
    """Markdown: one line per (dtype, causal, pass, L, method) with median ms and ratio."""
    lines = [
        "| dtype | causal | pass | L | method | median ms | x sdpa | x sdpa (min) |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['dtype']} | {r['causal']} | {r['pass']} | {r['L']} | {r['method']} | "
            f"{r['median_s'] * 1e3:.1f} | {r['ratio']:.2f} | {r.get('ratio_of_mins', 0):.2f} |"
        )
    return "\n".join(lines)


def memory_table(rows: list[dict]) -> str:
    """Markdown: forward+backward peak MiB per (L, method), with the ratio to sdpa."""
    lines = [
        "| L | method | peak MiB | bytes / token | x sdpa |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.2f}"
        per = "" if r.get("bytes_per_token") is None else f"{r['bytes_per_token']:.0f}"
        lines.append(f"| {r['L']} | {r['method']} | {_mib(r['peak_bytes'])} | {per} | {ratio} |")
    return "\n".join(lines)


def model_table(rows: list[dict]) -> str:
    """Markdown: whole-model throughput per attention, measured and FLOP-predicted overhead."""
    lines = [
        "| workload | attention | throughput | unit | measured overhead "
        "| FLOP-predicted overhead |",
        "| --- | --- | ---: | --- | ---: | ---: |",
    ]
    for r in rows:
        meas = "" if r.get("overhead") is None else f"{100 * r['overhead']:+.1f} %"
        pred = "" if r.get("flop_overhead") is None else f"{100 * r['flop_overhead']:+.1f} %"
        what = r["workload"] + (
            f" (compiled in {r['compile_s']:.1f} s)" if r.get("compile_s") is not None else ""
        )
        lines.append(
            f"| {what} | {r['attention']} | {r['throughput']:.1f} | {r['unit']} | {meas} | {pred} |"
        )
    return "\n".join(lines)


def plot_core(result: dict, out: Path) -> list[Path]:
    """``core_time.png`` (ratio to sdpa vs L) and ``core_memory.png`` (peak bytes vs L)."""
    paths: list[Path] = []
    rows = result.get("time", [])
    if rows:
        groups = sorted({(r["dtype"], r["causal"], r["pass"]) for r in rows})
        fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), squeeze=False)
        for ax, (dt, causal, p) in zip(axes[0], groups):
            sel = [r for r in rows if (r["dtype"], r["causal"], r["pass"]) == (dt, causal, p)]
            for m in dict.fromkeys(r["method"] for r in sel):
                pts = sorted((r["L"], r["ratio"]) for r in sel if r["method"] == m)
                ax.plot(*zip(*pts), marker="o", label=m)
            ax.axhline(2.0, color="grey", linestyle=":", linewidth=1)
            ax.set(
                xscale="log",
                yscale="log",
                xlabel="sequence length L",
                ylabel="time / softmax SDPA (same run)",
                title=f"{p}, {dt}, causal={causal}",
            )
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        paths.append(out / "core_time.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    mem = [r for r in result.get("memory", []) if r["peak_bytes"]]
    if mem:
        fig, ax = plt.subplots(figsize=(6, 4))
        for m in dict.fromkeys(r["method"] for r in mem):
            pts = sorted((r["L"], r["peak_bytes"] / 2**20) for r in mem if r["method"] == m)
            ax.plot(*zip(*pts), marker="o", label=m)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="sequence length L",
            ylabel="forward+backward peak MiB",
            title="attention-core peak memory",
        )
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(out / "core_memory.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def write_report(result: dict, out: Path, command: str | None = None) -> dict[str, Path]:
    """Write ``bench.json``, ``report.md`` and the plots into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "report": out / "report.md"}
    atomic_write_json(paths["json"], result)
    env = result.get("env", {})
    cfg = result.get("config", {})
    parts = ["# gpam bench", ""]
    if command:
        parts += ["Command:", "", f"    {command}", ""]
    parts += [
        f"torch {env.get('torch')}, device {env.get('device')}, {env.get('threads')} threads, "
        f"{env.get('clock', 'wall')} clock. "
        f"Time: B={cfg.get('batch')}, H={cfg.get('heads')}{_kv(cfg.get('kv_heads'))}, "
        f"D={cfg.get('head_dim')}, medians of "
        f"{cfg.get('repeats')} interleaved repeats; `x sdpa` is the median of per-round ratios "
        "to `F.scaled_dot_product_attention` softmax timed in the same loop; `x sdpa (min)` "
        "compares the fastest repeats.",
        "",
    ]
    if result.get("time"):
        parts += ["## Attention core: time", "", time_table(result["time"]), ""]
    if result.get("memory"):
        parts += [
            "## Attention core: forward+backward peak memory",
            "",
            f"B={cfg.get('memory_batch')}, H={cfg.get('memory_heads')}"
            f"{_kv(cfg.get('memory_kv_heads'))}, D={cfg.get('head_dim')}; "
            "bytes allocated by the call above the memory alive before it (CPU: torch.profiler "
            "memory records; CUDA: max_memory_allocated).",
            "",
            memory_table(result["memory"]),
            "",
        ]
    if result.get("models"):
        parts += ["## Whole models", "", model_table(result["models"]), ""]
        notes = result.get("models_note")
        if notes:
            parts += [notes, ""]
    for p in plot_core(result, out):
        paths[p.stem] = p
        parts += [f"![{p.stem}]({p.name})", ""]
    atomic_write_text(paths["report"], "\n".join(parts))
    return paths
