"""gpam.data: tokenizers, plain-text and sentence-pair corpora, Hugging Face datasets, and the
built-in synthetic tasks (``gpam.data.synthetic``)."""

from gpam.data.lm import (
    LMCorpus,
    LMDataOptions,
    LMStream,
    encode_corpus,
    eval_windows,
    prepare_lm_corpus,
)
from gpam.data.pairs import PairBatcher, collate, encode_pairs, read_pairs
from gpam.data.text import read_lines, read_text, split_text
from gpam.data.tokenizer import (
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    WordTokenizer,
    load_tokenizer,
    train_tokenizer,
)

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "LMCorpus",
    "LMDataOptions",
    "LMStream",
    "PairBatcher",
    "Tokenizer",
    "WordTokenizer",
    "collate",
    "encode_corpus",
    "encode_pairs",
    "eval_windows",
    "load_tokenizer",
    "prepare_lm_corpus",
    "read_lines",
    "read_pairs",
    "read_text",
    "split_text",
    "train_tokenizer",
]
