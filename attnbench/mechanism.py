"""What attention does inside a trained model: the size of its raw scores and the entropy of
its weights, measured with teacher forcing on held-out pairs.

Why: Vaswani et al. (2017) explain Britz et al.'s (2017) collapse of unscaled multiplicative
attention at large dimensions by dot products that grow with the dimension and saturate the
softmax. These two numbers show that mechanism per trained model: large mean |score| with
near-zero entropy is a saturated softmax.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from attnbench.attention import Attention
from attnbench.data.batching import encode_corpus, make_batches
from attnbench.data.corpus import ParallelCorpus
from attnbench.data.tokenizer import PAD_ID, Tokenizer
from attnbench.models import Seq2Seq


@contextmanager
def recorded_scores(attention: Attention) -> Iterator[list[Tensor]]:
    """Collect the raw (pre-softmax) scores of every call, (B, H, T_q, T_k) each, in order.

    Decoders call attention once per target step (T_q = 1) or once for all steps (T_q = T);
    either way the calls concatenated along T_q give one score per (target, source) pair.
    The scores are recomputed from the call's inputs, so the model's outputs are untouched.
    """
    calls: list[Tensor] = []
    original = attention.forward

    def forward(query: Tensor, keys: Tensor, values: Tensor, *args: Any, **kwargs: Any) -> Any:
        out = original(query, keys, values, *args, **kwargs)
        prepared = kwargs.get("prepared_keys")
        if prepared is None and len(args) >= 2:
            prepared = args[1]
        if prepared is None:
            prepared = attention.prepare_keys(keys)
        calls.append(attention.score(query, prepared).detach())
        return out

    attention.forward = forward  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del attention.forward


def score_statistics(
    scores: Tensor, weights: Tensor, src_mask: Tensor, tgt_mask: Tensor
) -> tuple[float, float, int]:
    """Sums over valid (target, source) pairs of one batch.

    scores (B, H, T, S) raw; weights (B, T, S); src_mask (B, S) True = padding;
    tgt_mask (B, T) True = a real target position. Returns (sum |score| over valid pairs and
    heads, sum of per-position entropies in nats, number of valid target positions).
    """
    pairs = tgt_mask[:, None, :, None] & ~src_mask[:, None, None, :]  # (B, 1, T, S)
    abs_sum = scores.abs().masked_fill(~pairs, 0.0).sum().item()
    p = weights.masked_fill(~pairs[:, 0], 0.0).clamp_min(0.0)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)  # (B, T)
    positions = int(tgt_mask.sum().item())
    return abs_sum, float(entropy[tgt_mask].sum().item()), positions


@torch.no_grad()
def attention_statistics(
    model: Seq2Seq,
    corpus: ParallelCorpus,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    device: torch.device | str = "cpu",
    max_sentences: int = 500,
    batch_size: int = 64,
) -> dict[str, float]:
    """Mean |raw score| per (target, source) pair and mean attention entropy per target token
    (nats; `uniform_entropy` is the entropy of uniform weights over the same sources, for scale)
    on the first `max_sentences` pairs of `corpus`."""
    pairs = encode_corpus(corpus.head(max_sentences), src_tok, tgt_tok)
    batches = make_batches(pairs, batch_size=batch_size, shuffle=False)
    was_training = model.training
    model.eval()
    abs_total = entropy_total = uniform_total = 0.0
    pair_count = positions = 0
    heads = model.decoder.attention.num_heads
    try:
        for batch in batches:
            b = batch.to(device)
            with recorded_scores(model.decoder.attention) as calls:
                _, weights = model(b.src, b.src_lengths, b.tgt_in)
            scores = torch.cat(calls, dim=2)[:, :, : weights.shape[1]]  # (B, H, T, S)
            src_mask, tgt_mask = b.src == PAD_ID, b.tgt_out != PAD_ID
            abs_sum, ent_sum, n = score_statistics(scores, weights, src_mask, tgt_mask)
            abs_total += abs_sum
            entropy_total += ent_sum
            positions += n
            sources = (~src_mask).sum(-1).double()  # (B,)
            pair_count += int((tgt_mask.sum(-1).double() * sources).sum().item()) * heads
            uniform_total += float((tgt_mask.sum(-1).double() * torch.log(sources)).sum().item())
    finally:
        model.train(was_training)
    if positions == 0:
        return {"mean_abs_score": math.nan, "entropy": math.nan, "uniform_entropy": math.nan}
    return {
        "mean_abs_score": abs_total / pair_count,
        "entropy": entropy_total / positions,
        "uniform_entropy": uniform_total / positions,
    }
