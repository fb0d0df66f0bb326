"""Attention variants behind one interface; see `base` for shapes and `registry` for names."""

from attnbench.attention.additive import AdditiveAttention
from attnbench.attention.base import Attention, masked_softmax
from attnbench.attention.multiplicative import (
    DotAttention,
    GeneralAttention,
    MultiplicativeAttention,
    ScaledDotAttention,
)
from attnbench.attention.registry import ATTENTION, build_attention, check_attention_name, register

__all__ = [
    "ATTENTION",
    "AdditiveAttention",
    "Attention",
    "DotAttention",
    "GeneralAttention",
    "MultiplicativeAttention",
    "ScaledDotAttention",
    "build_attention",
    "check_attention_name",
    "masked_softmax",
    "register",
]
