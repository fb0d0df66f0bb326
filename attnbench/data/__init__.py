"""Data layer: corpora (Multi30k, FLORES, synthetic), tokenizers and batching."""

from attnbench.data.batching import Batch, collate, encode_corpus, make_batches
from attnbench.data.checksums import sha256_file, verify_file
from attnbench.data.corpus import ParallelCorpus, read_lines, read_parallel, read_tsv
from attnbench.data.download import download_file
from attnbench.data.flores import (
    FLORES_FILES,
    FLORES_LANGS,
    FLORES_SHA256,
    FLORES_URL,
    load_flores,
)
from attnbench.data.multi30k import (
    MULTI30K_LANGS,
    MULTI30K_SHA256,
    MULTI30K_SPLITS,
    MULTI30K_URL,
    load_multi30k,
    multi30k_filename,
)
from attnbench.data.sources import CACHE_DIR_ENV, DATA_DIR_ENV, default_cache_root, fetch_file
from attnbench.data.synthetic import SYNTHETIC_TASKS, make_synthetic
from attnbench.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    TOKENIZER_KINDS,
    UNK_ID,
    SentencePieceTokenizer,
    Tokenizer,
    WordTokenizer,
    build_word_tokenizer,
    load_tokenizer,
    train_tokenizer,
)

__all__ = [
    "BOS_ID",
    "CACHE_DIR_ENV",
    "DATA_DIR_ENV",
    "EOS_ID",
    "FLORES_FILES",
    "FLORES_LANGS",
    "FLORES_SHA256",
    "FLORES_URL",
    "MULTI30K_LANGS",
    "MULTI30K_SHA256",
    "MULTI30K_SPLITS",
    "MULTI30K_URL",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "SYNTHETIC_TASKS",
    "TOKENIZER_KINDS",
    "UNK_ID",
    "Batch",
    "ParallelCorpus",
    "SentencePieceTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "build_word_tokenizer",
    "collate",
    "default_cache_root",
    "download_file",
    "encode_corpus",
    "fetch_file",
    "load_flores",
    "load_multi30k",
    "load_tokenizer",
    "make_batches",
    "make_synthetic",
    "multi30k_filename",
    "read_lines",
    "read_parallel",
    "read_tsv",
    "sha256_file",
    "train_tokenizer",
    "verify_file",
]
