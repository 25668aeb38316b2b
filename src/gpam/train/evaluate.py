"""Evaluation and inference from saved models: perplexity / bits per character, BLEU / chrF,
sampling and translation.

``model_dir`` may be a training ``--out`` folder (its ``model/`` is used), a ``model/`` folder,
or a checkpoint folder; each holds ``config.json``, ``model.safetensors`` and ``tokenizer.json``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from gpam.data.pairs import collate
from gpam.data.tokenizer import BOS_ID, EOS_ID, Tokenizer, load_tokenizer


def resolve_model_dir(path: str | Path) -> Path:
    """The folder holding ``config.json`` for a run folder, model folder or checkpoint folder."""
    from gpam.train.checkpoint import latest_checkpoint

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"model folder not found: {p}")
    for cand in (p, p / "model"):
        if (cand / "config.json").is_file():
            return cand
    ck = latest_checkpoint(p / "checkpoints")
    if ck is not None:
        return ck
    raise ValueError(f"--model {p}: no config.json in it, in {p / 'model'} or in a checkpoint")


def load_model(
    path: str | Path, device: str = "cpu", kind: str | None = None
) -> tuple[nn.Module, Tokenizer, Path]:
    """(model in eval mode, tokenizer, folder); ``kind`` "lm"/"seq2seq" checks the model type."""
    from gpam.models import Seq2SeqTransformer, TransformerLM, from_pretrained

    d = resolve_model_dir(path)
    model = from_pretrained(d, map_location=device)
    want = {"lm": TransformerLM, "seq2seq": Seq2SeqTransformer}.get(kind or "")
    if want is not None and not isinstance(model, want):
        raise ValueError(
            f"--model {path}: expected a {want.__name__}, found {type(model).__name__}"
        )
    return model, load_tokenizer(d / "tokenizer.json"), d


def evaluate_lm(
    model_path: str | Path,
    text_file: str | Path,
    *,
    last_fraction: float | None = None,
    seq_len: int | None = None,
    batch_size: int = 16,
    max_tokens: int | None = None,
    device: str = "cpu",
    skip_bad: bool = False,
) -> dict[str, Any]:
    """Cross-entropy, perplexity and (character models) bits per character on a held-out file.

    ``last_fraction`` evaluates only the end of the file (e.g. 0.1 = the last 10 %, the part
    ``gpam train lm --holdout-fraction 0.1`` held out).
    """
    from gpam.data.lm import encode_corpus
    from gpam.data.text import read_lines, read_text, split_text
    from gpam.train.lm import lm_loss

    model, tok, d = load_model(model_path, device, "lm")
    if tok.kind == "char":
        text, stats = read_text(text_file, skip_bad=skip_bad)
        if last_fraction is not None:
            text = split_text(text, 1.0 - last_fraction)[1]
        corpus: Any = text
    else:
        lines, stats = read_lines(text_file, skip_bad=skip_bad)
        if last_fraction is not None:
            if not 0.0 < last_fraction < 1.0:
                raise ValueError(f"last_fraction must be in (0, 1), got {last_fraction}")
            lines = lines[int(len(lines) * (1.0 - last_fraction)) :]
        corpus = lines
    ids = encode_corpus(corpus, tok, f"evaluation text {text_file}")
    seq = seq_len or model.config.max_len
    if seq > model.config.max_len and model.config.positions == "learned":
        raise ValueError(f"seq_len {seq} exceeds the model's max_len {model.config.max_len}")
    t0 = time.perf_counter()
    loss = lm_loss(model, ids, seq, batch_size, torch.device(device), max_tokens)
    n = min(ids.numel() - 1, max_tokens or ids.numel())
    res = {
        "model": str(d),
        "file": str(text_file),
        "last_fraction": last_fraction,
        "tokenizer": tok.kind,
        "tokens": n,
        "seq_len": seq,
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "seconds": time.perf_counter() - t0,
        "unk_rate": float((ids == tok.unk_id).float().mean()),
        "read": stats.to_dict(),
        "attention": model.config.attention,
    }
    if tok.kind == "char":
        res["bits_per_char"] = loss / math.log(2)
    return res


def translate(
    model: nn.Module,
    tok: Tokenizer,
    sources: list[str],
    *,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    max_len: int | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    progress: bool = False,
) -> list[str]:
    """Detokenised beam-search translations of ``sources`` (order kept)."""
    from tqdm.auto import tqdm

    limit = model.config.max_len - 1
    enc = [tok.encode(s)[: limit - 1] for s in sources]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    hyps: list[str] = [""] * len(enc)
    for k in tqdm(range(0, len(order), batch_size), disable=not progress, desc="translate"):
        idx = order[k : k + batch_size]
        b = collate([(enc[i], []) for i in idx])
        mlen = max_len or min(limit, 2 * b["src"].shape[1] + 10)
        out = model.beam_search(
            b["src"].to(device),
            b["src_padding_mask"].to(device),
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            beam_size=beam_size,
            max_len=min(mlen, limit),
            length_penalty=length_penalty,
        )
        for i, ids in zip(idx, out):
            hyps[i] = tok.decode(ids)
    return hyps


def evaluate_nmt(
    model_path: str | Path,
    src_file: str | Path,
    ref_file: str | Path,
    *,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    max_len: int | None = None,
    batch_size: int = 32,
    limit: int | None = None,
    device: str = "cpu",
    skip_bad: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Beam-search translations of ``src_file`` scored against ``ref_file`` with sacrebleu
    BLEU and chrF (on detokenised text). Returns scores and the hypotheses."""
    import sacrebleu

    from gpam.data.pairs import read_pairs

    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    model, tok, d = load_model(model_path, device, "seq2seq")
    pairs, stats = read_pairs(src_file, ref_file, skip_bad=skip_bad)
    if limit:
        pairs = pairs[:limit]
    t0 = time.perf_counter()
    hyps = translate(
        model,
        tok,
        [s for s, _ in pairs],
        beam_size=beam_size,
        length_penalty=length_penalty,
        max_len=max_len,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    refs = [t for _, t in pairs]
    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    chrf = sacrebleu.corpus_chrf(hyps, [refs])
    return {
        "model": str(d),
        "src": str(src_file),
        "ref": str(ref_file),
        "sentences": len(refs),
        "beam_size": beam_size,
        "length_penalty": length_penalty,
        "bleu": bleu.score,
        "bleu_signature": str(bleu),
        "chrf": chrf.score,
        "seconds": time.perf_counter() - t0,
        "read": stats.to_dict(),
        "attention": model.config.encoder_attention,
        "hypotheses": hyps,
    }


def generate_text(
    model_path: str | Path,
    prompt: str = "",
    *,
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    num_samples: int = 1,
    seed: int = 0,
    device: str = "cpu",
) -> list[str]:
    """Samples continuing ``prompt`` from a language model (decoded text, prompt included).

    Past the model's ``max_len`` each token is predicted from the last ``max_len`` tokens
    (``TransformerLM.generate``'s sliding window)."""
    model, tok, _ = load_model(model_path, device, "lm")
    ids = tok.encode(prompt) if prompt else []
    if not ids:
        ids = [tok.encode("\n")[0] if tok.kind == "char" else tok.eos_id]
    x = torch.tensor([ids] * num_samples, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(x, max_new_tokens, temperature=temperature, top_k=top_k, generator=g)
    return [_decode_all(tok, row) for row in out.tolist()]


def _decode_all(tok: Tokenizer, ids: list[int]) -> str:
    """Decode a sample, keeping line breaks at ``<eos>`` (word and BPE models)."""
    if tok.kind == "char":
        return tok.decode(ids)
    parts, cur = [], []
    for i in ids:
        if i == tok.eos_id:
            parts.append(tok.decode(cur))
            cur = []
        elif i not in (tok.pad_id, tok.bos_id):
            cur.append(i)
    return "\n".join(parts + [tok.decode(cur)])


def translate_stream(model_path: str | Path, inp: TextIO, out: TextIO, **kw: Any) -> int:
    """Translate every line of ``inp`` to ``out`` (blank lines stay blank); returns the count."""
    model, tok, _ = load_model(model_path, kw.get("device", "cpu"), "seq2seq")
    try:
        lines = [ln.rstrip("\r\n") for ln in inp]
    except UnicodeDecodeError as e:
        raise ValueError(f"stdin is not valid UTF-8 ({e.reason})") from None
    idx = [i for i, ln in enumerate(lines) if ln.strip()]
    hyps = translate(model, tok, [lines[i].strip() for i in idx], **kw) if idx else []
    result = [""] * len(lines)
    for i, h in zip(idx, hyps):
        result[i] = h
    for r in result:
        out.write(r + "\n")
    out.flush()
    return len(idx)


def run_eval_lm(
    model_path: str | Path, text_file: str | Path, out: Path, **kw: Any
) -> dict[str, Any]:
    """:func:`evaluate_lm` and write ``out/eval.json`` + ``out/report.md``."""
    from gpam.train.report import write_report

    res = evaluate_lm(model_path, text_file, **kw)
    lines = [
        f"model: {res['model']} ({res['attention']} attention, {res['tokenizer']} tokens)",
        f"file: {res['file']}"
        + (f", last {res['last_fraction']:g} of it" if res["last_fraction"] else ""),
        f"tokens scored: {res['tokens']:,} (context {res['seq_len']})",
        f"loss: {res['loss']:.4f} nats/token; perplexity: {res['perplexity']:.3f}",
    ]
    if "bits_per_char" in res:
        lines.append(f"bits per character: {res['bits_per_char']:.4f}")
    write_report(Path(out), "eval", "gpam eval lm", res, lines)
    return res


def run_eval_nmt(
    model_path: str | Path, src: str | Path, ref: str | Path, out: Path, **kw: Any
) -> dict[str, Any]:
    """:func:`evaluate_nmt` and write ``out/eval.json``, ``out/hypotheses.txt``, report.md."""
    from gpam._io import atomic_write_text
    from gpam.train.report import write_report

    res = evaluate_nmt(model_path, src, ref, **kw)
    out = Path(out)
    atomic_write_text(out / "hypotheses.txt", "".join(h + "\n" for h in res["hypotheses"]))
    summary = {k: v for k, v in res.items() if k != "hypotheses"}
    lines = [
        f"model: {res['model']} ({res['attention']} attention)",
        f"source: {res['src']}; references: {res['ref']} ({res['sentences']} sentences)",
        f"beam size {res['beam_size']}, length penalty {res['length_penalty']}",
        f"BLEU: {res['bleu']:.2f} ({res['bleu_signature']})",
        f"chrF: {res['chrf']:.2f}",
        "translations: hypotheses.txt",
    ]
    write_report(out, "eval", "gpam eval nmt", summary, lines)
    return res
