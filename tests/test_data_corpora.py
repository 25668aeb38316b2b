"""Text and sentence-pair corpora: gzip, empty lines, bad bytes, alignment, batches, HF path."""

from __future__ import annotations

import gzip

import pytest
import torch

from gen_data import real_or_generated, write_pairs
from gpam.data.lm import LMStream, encode_corpus, eval_windows
from gpam.data.pairs import PairBatcher, collate, encode_pairs, read_pairs
from gpam.data.text import read_lines, split_text
from gpam.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, CharTokenizer, WordTokenizer


def test_read_lines_gzip_and_counted_skips(tmp_path):
    p = tmp_path / "c.txt.gz"
    p.write_bytes(gzip.compress(b"one two\n\n   \nthree\n"))
    lines, st = read_lines(p)
    assert lines == ["one two", "three"]
    assert (st.lines, st.empty_skipped, st.bad_utf8_skipped) == (2, 2, 0)
    assert "2 empty skipped" in st.summary()


def test_non_utf8_is_a_clear_error_or_a_counted_skip(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"fine\nbad \xff\xfe here\nalso fine\n")
    with pytest.raises(
        ValueError, match=r"bad.txt: 1 line is not valid UTF-8 \(the first: line 2,"
    ):
        read_lines(p)
    lines, st = read_lines(p, skip_bad=True)
    assert lines == ["fine", "also fine"] and st.bad_utf8_skipped == 1
    with pytest.raises(FileNotFoundError):
        read_lines(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="is a directory"):
        read_lines(tmp_path)


def test_pairs_mismatch_and_skips(tmp_path):
    src, tgt = tmp_path / "s.gz", tmp_path / "t.gz"
    src.write_bytes(gzip.compress(b"a b\n\nc\nd\n"))
    tgt.write_bytes(gzip.compress(b"A B\nX\n\nD\n"))
    pairs, st = read_pairs(src, tgt)
    assert pairs == [("a b", "A B"), ("d", "D")] and st.empty_skipped == 2
    tgt.write_bytes(gzip.compress(b"A\nB\n"))
    with pytest.raises(ValueError, match=r"not aligned: .*s.gz has 4 lines but .*t.gz has 2"):
        read_pairs(src, tgt)


def test_multi30k_validation_pairs(data_dir):
    """Extra, with the shared corpora: the real Multi30k validation split reads as 1014 pairs."""
    m = data_dir / "multi30k"
    pairs, st = read_pairs(m / "val.de.gz", m / "val.en.gz")
    assert st.pairs == len(pairs) == 1014 and pairs[0][1].startswith("A group of men")


def _pairs(source, request, tmp_path):
    if source == "generated":
        f = write_pairs(tmp_path / "p", n_train=400, n_valid=2)
        return read_pairs(f["train_src"], f["train_tgt"])[0]
    m = request.getfixturevalue("data_dir") / "multi30k"
    return read_pairs(m / "val.de.gz", m / "val.en.gz")[0]


@pytest.mark.parametrize("source", ["generated", "real"])
def test_pair_batches_padding_and_buckets(source, request, tmp_path):
    pairs = _pairs(source, request, tmp_path)
    tok = WordTokenizer.train([s for p in pairs for s in p])
    limit = 20 if source == "real" else 8  # generated sentences are short: cut some anyway
    data, cut = encode_pairs(pairs, tok, tok, max_len=limit)
    assert cut > 0 and all(len(s) <= limit - 1 and len(t) <= limit - 1 for s, t in data)
    b = PairBatcher(data, max_tokens=300, seed=1)
    batches = b.epoch_batches(0)
    assert sorted(i for bt in batches for i in bt) == list(range(len(data)))  # each pair once
    assert batches != b.epoch_batches(1) and batches == PairBatcher(data, 300, 1).epoch_batches(0)
    for idx in batches[:20]:
        x = b.get(idx)
        B, S = x["src"].shape
        assert B * (S + x["tgt_in"].shape[1]) <= 300 + 2 * B
        assert torch.equal(x["src_padding_mask"], x["src"] == PAD_ID)
        assert (x["tgt_in"][:, 0] == BOS_ID).all()
        # tgt_out is tgt_in shifted left, with <eos> where tgt_in's real tokens end
        lens = (~x["tgt_padding_mask"]).sum(1)
        for r in range(B):
            n = int(lens[r])
            assert torch.equal(x["tgt_out"][r, : n - 1], x["tgt_in"][r, 1:n])
            assert x["tgt_out"][r, n - 1] == EOS_ID
    # DDP shards: disjoint, same number of batches per rank
    r0 = PairBatcher(data, 300, 1, rank=0, world_size=2).epoch_batches(0)
    r1 = PairBatcher(data, 300, 1, rank=1, world_size=2).epoch_batches(0)
    assert len(r0) == len(r1) and not {i for x in r0 for i in x} & {i for x in r1 for i in x}


def test_collate_shapes():
    x = collate([([5, 6, 7], [8]), ([5], [8, 9, 10])])
    assert x["src"].tolist() == [[5, 6, 7, EOS_ID], [5, EOS_ID, 0, 0]]
    assert x["tgt_in"].tolist() == [[BOS_ID, 8, 0, 0], [BOS_ID, 8, 9, 10]]
    assert x["tgt_out"].tolist() == [[8, EOS_ID, 0, 0], [8, 9, 10, EOS_ID]]


@pytest.mark.parametrize("source", ["generated", "real"])
def test_lm_stream_and_eval_windows(source, request):
    text = "\n".join(
        real_or_generated(source, request, "shakespeare", 10**6 if source == "real" else 3000)
    )
    train, held = split_text(text, 0.9)
    assert train + held == text and abs(len(held) - 0.1 * len(text)) < 2
    tok = CharTokenizer.train([train[:20000]])
    ids = encode_corpus(train[:20000], tok)
    s = LMStream(ids, seq_len=16, batch_size=4, seed=3)
    x, y = s.batch(5)
    assert x.shape == y.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(s.batch(5)[0], x) and not torch.equal(s.batch(6)[0], x)
    assert not torch.equal(s.batch(5, rank=1, world_size=2)[0], s.batch(5, 0, 2)[0])
    small = ids[:103]
    ys = torch.cat([y.reshape(-1) for _, y in eval_windows(small, 10, 4)])
    assert torch.equal(ys, small[1:])  # every target exactly once, in order
    with pytest.raises(ValueError, match="fewer than seq_len"):
        LMStream(ids[:5], seq_len=16, batch_size=2)


@pytest.mark.parametrize("source", ["generated", "real"])
def test_word_corpus_appends_eos(source, request):
    lines = real_or_generated(source, request, "ptb.test", 30) + ["", "   "]
    tok = WordTokenizer.train(lines)
    ids = encode_corpus(lines, tok)
    assert int((ids == EOS_ID).sum()) == len([ln for ln in lines if ln.strip()])


def test_hf_text_dataset_offline(tmp_path):
    pytest.importorskip("datasets")
    from gpam.data.hf import load_hf_lines, load_hf_pairs

    (tmp_path / "a.txt").write_text("hello world\n\nsecond line\n")
    lines = load_hf_lines("text", data_files={"train": str(tmp_path / "a.txt")})
    assert [ln for ln in lines if ln] == ["hello world", "second line"]
    with pytest.raises(ValueError, match="no column 'body'"):
        load_hf_lines("text", column="body", data_files={"train": str(tmp_path / "a.txt")})
    (tmp_path / "p.json").write_text(
        '{"translation": {"de": "ein Hund", "en": "a dog"}}\n'
        '{"translation": {"de": "eine Katze", "en": "a cat"}}\n'
    )
    pairs = load_hf_pairs(
        "json", src_lang="de", tgt_lang="en", data_files={"train": str(tmp_path / "p.json")}
    )
    assert pairs == [("ein Hund", "a dog"), ("eine Katze", "a cat")]
