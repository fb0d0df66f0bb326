"""Variants registered by name: the same registry feeds the CLI, Optuna's choice and benchmarks."""

from __future__ import annotations

from typing import Any

from attnbench.attention.additive import AdditiveAttention
from attnbench.attention.base import Attention
from attnbench.attention.multiplicative import DotAttention, GeneralAttention, ScaledDotAttention
from attnbench.errors import UserError

ATTENTION: dict[str, type[Attention]] = {}


def register(name: str, cls: type[Attention]) -> type[Attention]:
    """Add a variant; names are unique so a typo cannot shadow a built-in."""
    if name in ATTENTION:
        raise ValueError(f"attention '{name}' is already registered")
    cls.name = name
    ATTENTION[name] = cls
    return cls


register("additive", AdditiveAttention)
register("dot", DotAttention)
register("general", GeneralAttention)
register("scaled_dot", ScaledDotAttention)


def check_attention_name(name: str) -> str:
    """Return `name` if registered, else a UserError listing the valid names."""
    if name not in ATTENTION:
        valid = ", ".join(sorted(ATTENTION))
        raise UserError(f"unknown attention '{name}'; choose one of: {valid}")
    return name


def build_attention(
    name: str,
    query_dim: int,
    key_dim: int,
    attn_dim: int | None = None,
    num_heads: int = 1,
    **options: Any,
) -> Attention:
    """Build a registered variant; `options` go to its constructor (e.g. additive's chunk_size)."""
    cls = ATTENTION[check_attention_name(name)]
    try:
        return cls(query_dim, key_dim, attn_dim=attn_dim, num_heads=num_heads, **options)
    except ValueError as exc:
        raise UserError(f"attention '{name}': {exc}") from exc
