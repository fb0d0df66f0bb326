"""Seq2Seq models: bidirectional encoder, attentive decoders, greedy and beam search."""

from attnbench.models.decoder import (
    DECODERS,
    AttentiveDecoder,
    BahdanauDecoder,
    DecoderState,
    LuongDecoder,
    Memory,
)
from attnbench.models.encoder import Encoder
from attnbench.models.search import Hypothesis, beam_search, greedy_search, length_penalty
from attnbench.models.seq2seq import Seq2Seq, build_model, build_model_attention, count_parameters

__all__ = [
    "DECODERS",
    "AttentiveDecoder",
    "BahdanauDecoder",
    "DecoderState",
    "Encoder",
    "Hypothesis",
    "LuongDecoder",
    "Memory",
    "Seq2Seq",
    "beam_search",
    "build_model",
    "build_model_attention",
    "count_parameters",
    "greedy_search",
    "length_penalty",
]
