"""Encoding and batching: shapes, padding, BOS/EOS placement, budgets, determinism."""

from __future__ import annotations

import pytest
import torch

from attnbench.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    Batch,
    ParallelCorpus,
    build_word_tokenizer,
    encode_corpus,
    make_batches,
    make_synthetic,
)
from attnbench.errors import UserError


def _pairs(n: int = 300, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    corpus = make_synthetic("reverse", n, 1, 15, 20, seed=seed)
    tok = build_word_tokenizer(corpus.src + corpus.tgt)
    return encode_corpus(corpus, tok, tok)


def test_encode_corpus_truncates_without_specials() -> None:
    corpus = ParallelCorpus("toy", ["a b c d", ""], ["x y", "z"])
    src_tok = build_word_tokenizer(corpus.src)
    tgt_tok = build_word_tokenizer(corpus.tgt)
    pairs = encode_corpus(corpus, src_tok, tgt_tok)
    assert pairs == [([4, 5, 6, 7], [4, 5]), ([], [6])]
    assert encode_corpus(corpus, src_tok, tgt_tok, max_len=2) == [([4, 5], [4, 5]), ([], [6])]
    with pytest.raises(UserError):
        encode_corpus(corpus, src_tok, tgt_tok, max_len=0)


def test_batch_layout_and_empty_source() -> None:
    pairs = [([5, 6, 7], [8, 9]), ([], [10]), ([11], [12, 13, 14])]
    (b,) = make_batches(pairs, batch_size=8, shuffle=False, sort_by_length=False)
    assert b.indices == [0, 1, 2]
    assert b.src.dtype == b.tgt_in.dtype == b.tgt_out.dtype == b.src_lengths.dtype == torch.long
    assert b.src.tolist() == [
        [5, 6, 7, EOS_ID],
        [EOS_ID, PAD_ID, PAD_ID, PAD_ID],
        [11, EOS_ID, 0, 0],
    ]
    assert b.src_lengths.tolist() == [4, 1, 2]
    assert b.tgt_in.tolist() == [[BOS_ID, 8, 9, 0], [BOS_ID, 10, 0, 0], [BOS_ID, 12, 13, 14]]
    assert b.tgt_out.tolist() == [[8, 9, EOS_ID, 0], [10, EOS_ID, 0, 0], [12, 13, 14, EOS_ID]]
    assert b.num_target_tokens == 3 + 2 + 4
    assert len(b) == 3
    moved = b.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.src, b.src)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        b.src.unsqueeze(-1).float(), b.src_lengths, batch_first=True, enforce_sorted=False
    )
    assert packed.data.shape[0] == 7


def test_shapes_and_indices_cover_corpus() -> None:
    pairs = _pairs()
    batches = make_batches(pairs, batch_size=32, seed=1)
    assert sorted(i for b in batches for i in b.indices) == list(range(len(pairs)))
    assert max(len(b) for b in batches) == 32
    for b in batches:
        bsz = len(b)
        assert b.src.shape[0] == b.tgt_in.shape[0] == b.src_lengths.shape[0] == bsz
        assert b.tgt_in.shape == b.tgt_out.shape
        assert b.src.shape[1] == int(b.src_lengths.max())
        for row, i in enumerate(b.indices):
            src, tgt = pairs[i]
            assert b.src[row, : len(src) + 1].tolist() == [*src, EOS_ID]
            assert b.tgt_out[row, : len(tgt) + 1].tolist() == [*tgt, EOS_ID]
            assert (b.src[row, len(src) + 1 :] == PAD_ID).all()


@pytest.mark.parametrize("max_tokens", [40, 100, 333])
def test_max_tokens_respected(max_tokens: int) -> None:
    pairs = _pairs()
    batches = make_batches(pairs, max_tokens=max_tokens, seed=0)
    assert sorted(i for b in batches for i in b.indices) == list(range(len(pairs)))
    for b in batches:
        assert max(b.src.shape[1], b.tgt_in.shape[1]) * len(b) <= max_tokens
    # sorted by length, batches cut one monotone sequence: their length spans add up to at
    # most the overall span (here lengths 2..16)
    assert sum(int(b.src_lengths.max() - b.src_lengths.min()) for b in batches) <= 14


def test_oversized_pair_gets_own_batch() -> None:
    pairs = [([1] * 50, [1] * 50), ([4], [5]), ([6], [7])]
    batches = make_batches(pairs, max_tokens=10, shuffle=False)
    assert [b.indices for b in batches] == [[1, 2], [0]]


def test_deterministic_by_seed() -> None:
    pairs = _pairs()

    def order(seed: int) -> list[list[int]]:
        return [b.indices for b in make_batches(pairs, max_tokens=200, seed=seed)]

    assert order(3) == order(3)
    assert order(3) != order(4)
    plain = make_batches(pairs, batch_size=50, shuffle=False, sort_by_length=False)
    assert [i for b in plain for i in b.indices] == list(range(len(pairs)))


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"max_tokens": 10, "batch_size": 2}, {"batch_size": 0}, {"max_tokens": 0}],
)
def test_batching_validation(kwargs: dict) -> None:
    with pytest.raises(UserError) as e:
        make_batches(_pairs(10), **kwargs)
    assert "\n" not in str(e.value)
