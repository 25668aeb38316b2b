"""Tokenizers: round trips, <unk>, vocabulary caps, save/load (char, word, BPE)."""

from __future__ import annotations

import pytest

from gen_data import real_or_generated
from gpam.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    BPETokenizer,
    CharTokenizer,
    WordTokenizer,
    load_tokenizer,
    train_tokenizer,
)

SOURCES = pytest.mark.parametrize("source", ["generated", "real"])


def test_specials_are_first_for_every_kind():
    for kind in ("char", "word", "bpe"):
        tok = train_tokenizer(kind, ["a b c a b", "c d e"], vocab_size=40)
        assert tok.vocab[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
        assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)


@SOURCES
def test_char_round_trip_and_unknown(source, request, tmp_path):
    text = "\n".join(real_or_generated(source, request, "shakespeare", 200))[:5000]
    tok = CharTokenizer.train([text])
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("\u00e9") == [UNK_ID]
    tok.save(tmp_path / "t.json")
    again = load_tokenizer(tmp_path / "t.json")
    assert isinstance(again, CharTokenizer) and again.encode(text) == tok.encode(text)


@SOURCES
def test_word_min_freq_and_cap(source, request):
    lines = real_or_generated(source, request, "ptb.valid", 500)
    full = WordTokenizer.train(lines)
    rare = WordTokenizer.train(lines, min_freq=3)
    capped = WordTokenizer.train(lines, vocab_size=50)
    assert capped.vocab_size == 50
    assert 4 < rare.vocab_size < full.vocab_size
    ids = capped.encode(lines[0])
    assert len(ids) == len(lines[0].split())
    if source == "real":
        assert UNK_ID in ids  # a 50-word vocabulary cannot hold a whole PTB sentence
    assert full.decode(full.encode(lines[1])) == " ".join(lines[1].split())
    # decode stops at <eos> and drops <pad>/<bos>
    assert full.decode([BOS_ID, *full.encode("the"), EOS_ID, *full.encode("a")]) == "the"
    assert full.decode([PAD_ID, *full.encode("the"), PAD_ID]) == "the"


@SOURCES
def test_bpe_lossless_on_held_out_text(source, request, tmp_path):
    train = real_or_generated(source, request, "multi30k.train.de", 2000)
    train += real_or_generated(source, request, "multi30k.train.en", 2000)
    vs = 800 if source == "real" else 60  # the generated text has ~70 distinct words
    tok = BPETokenizer.train(train, vocab_size=vs)
    assert tok.vocab_size <= vs + 256  # merges + byte fallback
    test = real_or_generated(source, request, "multi30k.test_2016_flickr.de", 50)
    for s in test:
        ids = tok.encode(s)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == s  # Metaspace pre-tokenizer: detokenisation is exact
    # subwords: fewer ids than characters, more than words on average
    n_ids = sum(len(tok.encode(s)) for s in test)
    assert sum(len(s.split()) for s in test) < n_ids < sum(len(s) for s in test)
    tok.save(tmp_path / "bpe.json")
    again = load_tokenizer(tmp_path / "bpe.json")
    assert again.vocab == tok.vocab and again.encode(test[0]) == tok.encode(test[0])


def test_bad_inputs_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        train_tokenizer("sentencepiece", ["a"])
    with pytest.raises(ValueError, match="no training text"):
        train_tokenizer("char", [])
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_tokenizer(tmp_path / "bad.json")
    (tmp_path / "kind.json").write_text('{"kind": "x"}')
    with pytest.raises(ValueError, match="kind must be one of"):
        load_tokenizer(tmp_path / "kind.json")
