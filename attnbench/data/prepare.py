"""Config -> corpora and tokenizers: the one place a data config is interpreted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attnbench.config import DataConfig
from attnbench.data.corpus import ParallelCorpus, read_parallel, read_tsv
from attnbench.data.flores import load_flores
from attnbench.data.multi30k import load_multi30k
from attnbench.data.synthetic import make_synthetic
from attnbench.data.tokenizer import Tokenizer, train_tokenizer
from attnbench.errors import UserError

FLORES_SPLIT = "flores200"
#: seeds of the synthetic splits: fixed so every variant and run sees the same data
SYNTHETIC_SEEDS = {"train": 1, "val": 2, "test": 3}


@dataclass
class PreparedData:
    train: ParallelCorpus
    val: ParallelCorpus
    tests: dict[str, ParallelCorpus]
    src_tok: Tokenizer
    tgt_tok: Tokenizer


def _limit(corpus: ParallelCorpus, n: int | None) -> ParallelCorpus:
    return corpus if n is None else corpus.head(n)


def _multi30k_split(cfg: DataConfig, split: str) -> ParallelCorpus:
    if split == FLORES_SPLIT:
        return load_flores(cfg.src_lang, cfg.tgt_lang, data_dir=cfg.data_dir)
    return load_multi30k(split, cfg.src_lang, cfg.tgt_lang, data_dir=cfg.data_dir)


def _file_split(cfg: DataConfig, split: str) -> ParallelCorpus:
    if split not in cfg.files:
        have = ", ".join(sorted(cfg.files)) or "none"
        raise UserError(f"data.files has no '{split}' entry (have: {have}); add data.files.{split}")
    pair = cfg.files[split]
    if pair.tsv is not None:
        return read_tsv(pair.tsv, name=split)
    assert pair.src is not None and pair.tgt is not None  # the config validator ensures it
    return read_parallel(pair.src, pair.tgt, name=split)


def _synthetic_split(cfg: DataConfig, split: str) -> ParallelCorpus:
    syn = cfg.synthetic
    n = {"train": syn.n_train, "val": syn.n_val}.get(split, syn.n_test)
    max_len = (
        syn.test_max_len if split not in ("train", "val") and syn.test_max_len else syn.max_len
    )
    seed = SYNTHETIC_SEEDS.get(split, SYNTHETIC_SEEDS["test"])
    return make_synthetic(
        syn.task, n, syn.min_len, max_len, syn.vocab_size, seed, name=f"{syn.task}/{split}"
    )


def load_split(cfg: DataConfig, split: str) -> ParallelCorpus:
    """One named split of the configured dataset, with the configured size limit."""
    loader = {"multi30k": _multi30k_split, "parallel": _file_split, "synthetic": _synthetic_split}
    corpus = loader[cfg.dataset](cfg, split)
    limit = {"train": cfg.train_limit, "val": cfg.val_limit}.get(split, cfg.test_limit)
    return _limit(corpus, limit)


def evaluation_splits(cfg: DataConfig) -> list[str]:
    """The evaluation splits: configured ones, or every non-train/val file of a user corpus."""
    if cfg.dataset == "parallel" and cfg.test_splits == DataConfig().test_splits:
        return [s for s in cfg.files if s not in ("train", "val")]
    if cfg.dataset == "synthetic":
        return ["test"]
    return list(cfg.test_splits)


def prepare_data(cfg: DataConfig, cache_dir: Path | None = None) -> PreparedData:
    """Load train/val/test and train (or fetch from cache) the two tokenizers on train."""
    train = load_split(cfg, "train")
    val = load_split(cfg, "val")
    tests = {name: load_split(cfg, name) for name in evaluation_splits(cfg)}
    src_tok = train_tokenizer(train.src, cfg.src_vocab_size, cfg.tokenizer, cache_dir)
    tgt_tok = train_tokenizer(train.tgt, cfg.tgt_vocab_size, cfg.tokenizer, cache_dir)
    return PreparedData(train, val, tests, src_tok, tgt_tok)
