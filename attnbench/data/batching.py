"""Encode corpora and group them into padded, length-bucketed batches.

Every SOURCE sequence ends with EOS (src = tokens + [EOS]) so that an empty sentence still
has length >= 1: `pack_padded_sequence` rejects zero lengths, and the encoder gets an
explicit end marker to attend to.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from attnbench.data.corpus import ParallelCorpus
from attnbench.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from attnbench.errors import UserError

Pair = tuple[list[int], list[int]]


def encode_corpus(
    corpus: ParallelCorpus,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    max_len: int | None = None,
) -> list[Pair]:
    """Token ids for every pair, in corpus order, without BOS/EOS.

    `max_len` truncates each side to that many tokens (EOS/BOS are added later on top).
    """
    if max_len is not None and max_len < 1:
        raise UserError(f"max_len must be >= 1 or None, got {max_len}; fix the data config")
    src = src_tok.encode_batch(corpus.src)
    tgt = tgt_tok.encode_batch(corpus.tgt)
    if max_len is not None:
        src = [s[:max_len] for s in src]
        tgt = [t[:max_len] for t in tgt]
    return list(zip(src, tgt, strict=True))


@dataclass
class Batch:
    """Padded tensors for one step; B = batch size, S = max source length incl. EOS,
    T = max target length + 1.

    - `src`: (B, S) long, source ids + EOS, right-padded with PAD_ID.
    - `src_lengths`: (B,) long, unpadded source lengths (>= 1), any order.
    - `tgt_in`: (B, T) long, BOS + target (decoder input, teacher forcing), PAD-padded.
    - `tgt_out`: (B, T) long, target + EOS (what the decoder must predict), PAD-padded.
    - `indices`: positions of the rows in the encoded corpus, to restore original order.
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    indices: list[int]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def num_target_tokens(self) -> int:
        """Non-pad entries of `tgt_out` (the loss normaliser)."""
        return int((self.tgt_out != PAD_ID).sum().item())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Copy of the batch with every tensor on `device` (lengths too, for masks)."""
        return Batch(
            src=self.src.to(device, non_blocking=non_blocking),
            src_lengths=self.src_lengths.to(device, non_blocking=non_blocking),
            tgt_in=self.tgt_in.to(device, non_blocking=non_blocking),
            tgt_out=self.tgt_out.to(device, non_blocking=non_blocking),
            indices=list(self.indices),
        )


def _pad(seqs: list[list[int]]) -> torch.Tensor:
    """(len(seqs), max_len) long tensor, right-padded with PAD_ID."""
    out = torch.full((len(seqs), max(len(s) for s in seqs)), PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def collate(pairs: list[Pair], indices: list[int]) -> Batch:
    """Build one Batch from `pairs` (ids without BOS/EOS); `indices` label the rows."""
    src = [[*s, EOS_ID] for s, _ in pairs]
    return Batch(
        src=_pad(src),
        src_lengths=torch.tensor([len(s) for s in src], dtype=torch.long),
        tgt_in=_pad([[BOS_ID, *t] for _, t in pairs]),
        tgt_out=_pad([[*t, EOS_ID] for _, t in pairs]),
        indices=list(indices),
    )


def _chunk(
    order: list[int], pairs: list[Pair], max_tokens: int | None, batch_size: int | None
) -> list[list[int]]:
    """Split `order` into index groups by fixed size or by padded token budget."""
    if batch_size is not None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    assert max_tokens is not None
    groups: list[list[int]] = []
    cur: list[int] = []
    width = 0
    for i in order:
        s, t = pairs[i]
        w = max(width, len(s) + 1, len(t) + 1)
        if cur and w * (len(cur) + 1) > max_tokens:
            groups.append(cur)
            cur, w = [], max(len(s) + 1, len(t) + 1)
        cur.append(i)
        width = w
    if cur:
        groups.append(cur)
    return groups


def make_batches(
    pairs: list[Pair],
    max_tokens: int | None = None,
    batch_size: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    sort_by_length: bool = True,
) -> list[Batch]:
    """Group encoded pairs into batches, deterministic for a given `seed`.

    Give exactly one of `batch_size` (rows per batch) or `max_tokens` (bound on
    max(S, T) * B per batch; a single pair longer than that gets a batch of its own rather
    than being dropped). With `sort_by_length`, pairs are sorted by source then target
    length so batches carry little padding; with `shuffle`, ties in that sort and the order
    of the batches are shuffled by `random.Random(seed)` (pass the epoch as seed for a
    different order each epoch).
    """
    if (max_tokens is None) == (batch_size is None):
        raise UserError(
            "give exactly one of max_tokens or batch_size for batching; set the other to None"
        )
    if max_tokens is not None and max_tokens < 1:
        raise UserError(f"max_tokens must be >= 1, got {max_tokens}; raise it")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}; raise it")
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    if shuffle:
        rng.shuffle(order)
    if sort_by_length:
        order.sort(key=lambda i: (len(pairs[i][0]), len(pairs[i][1])))  # stable
    groups = _chunk(order, pairs, max_tokens, batch_size)
    if shuffle:
        rng.shuffle(groups)
    return [collate([pairs[i] for i in g], g) for g in groups]
