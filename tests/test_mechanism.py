"""The softmax-mechanism statistics: raw scores recorded in step order, entropy on known cases."""

from __future__ import annotations

import math

import pytest
import torch

from attnbench.attention import masked_softmax
from attnbench.config import ModelConfig
from attnbench.data.corpus import ParallelCorpus
from attnbench.data.tokenizer import build_word_tokenizer
from attnbench.mechanism import attention_statistics, recorded_scores, score_statistics
from attnbench.models import build_model

CORPUS = ParallelCorpus(
    "toy",
    ["a b c d", "b c", "d a b c d a", "c", "a a b"],
    ["x y", "y z x", "z", "x y z x y", "y"],
)


def toy_model(attention: str, decoder: str = "luong", feeding: bool = False, attn_dim=None):
    torch.manual_seed(0)
    src_tok = build_word_tokenizer(CORPUS.src)
    tgt_tok = build_word_tokenizer(CORPUS.tgt)
    cfg = ModelConfig(attention=attention, decoder=decoder, input_feeding=feeding, emb_dim=8,
                      hidden_dim=16, dropout=0.0, attn_dim=attn_dim)  # fmt: skip
    model = build_model(cfg, src_tok.vocab_size, tgt_tok.vocab_size).double()
    return model, src_tok, tgt_tok


@pytest.mark.parametrize(
    ("decoder", "feeding"), [("luong", False), ("luong", True), ("bahdanau", False)]
)
def test_recorded_scores_are_the_weights_before_softmax(decoder, feeding):
    """Per-step and all-at-once decoders alike: softmax(recorded) == the returned weights."""
    model, *_ = toy_model("general", decoder, feeding)
    src = torch.tensor([[4, 5, 6, 3], [7, 3, 0, 0]])  # ids inside the toy vocabularies
    tgt_in = torch.tensor([[1, 4, 5], [1, 6, 0]])
    with recorded_scores(model.decoder.attention) as calls:
        _, weights = model(src, torch.tensor([4, 2]), tgt_in)
    scores = torch.cat(calls, dim=2)  # (B, H, T, S)
    assert scores.shape == (2, 1, 3, 4)
    expected = masked_softmax(scores, src == 0).squeeze(1)
    torch.testing.assert_close(expected, weights, rtol=1e-12, atol=1e-12)
    assert "forward" not in vars(model.decoder.attention)  # the wrapper is removed afterwards


def test_score_statistics_count_only_real_pairs():
    scores = torch.tensor([[[[1.0, -3.0, 100.0], [2.0, 2.0, 100.0]]]])  # (1, 1, T=2, S=3)
    weights = torch.tensor([[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]])
    src_mask = torch.tensor([[False, False, True]])
    tgt_mask = torch.tensor([[True, False]])  # second target position is padding
    abs_sum, entropy, positions = score_statistics(scores, weights, src_mask, tgt_mask)
    assert abs_sum == 4.0 and positions == 1
    assert entropy == pytest.approx(math.log(2))


def test_constant_scores_give_uniform_entropy_and_zero_size():
    model, src_tok, tgt_tok = toy_model("additive")
    torch.nn.init.zeros_(model.decoder.attention.v.weight)  # every score is 0
    stats = attention_statistics(model, CORPUS, src_tok, tgt_tok)
    assert stats["mean_abs_score"] == 0.0
    assert stats["entropy"] == pytest.approx(stats["uniform_entropy"], rel=1e-9)


def test_scaling_divides_the_score_size_by_sqrt_of_the_dimension():
    """general and scaled_dot with the same projections differ exactly by 1/sqrt(A)."""
    general, src_tok, tgt_tok = toy_model("general", attn_dim=64)
    scaled, *_ = toy_model("scaled_dot", attn_dim=64)
    scaled.load_state_dict(general.state_dict())
    g = attention_statistics(general, CORPUS, src_tok, tgt_tok)
    s = attention_statistics(scaled, CORPUS, src_tok, tgt_tok)
    assert s["mean_abs_score"] == pytest.approx(g["mean_abs_score"] / 8.0, rel=1e-9)
    assert s["entropy"] >= g["entropy"] - 1e-12  # flatter scores, flatter weights
