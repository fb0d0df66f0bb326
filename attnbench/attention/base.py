"""The one attention interface: variants differ only in how they score a query against keys.

Shapes (B batch, T_q queries, T_k keys, H heads):
    query            (B, T_q, D_q)
    keys             (B, T_k, D_k)
    values           (B, T_k, D_v)      D_v divisible by H
    key_padding_mask (B, T_k) bool, True = padding (PyTorch's polarity)
    context          (B, T_q, D_v)
    weights          (B, T_q, T_k)      averaged over heads

Multi-head (``num_heads > 1``): a variant splits its (projected) scoring dimension into H
equal parts and scores each part separately; the values are split into H equal parts too,
each head attends over its own part, and the H contexts are concatenated back to D_v. With
H = 1 every variant is exactly its paper's formula.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, T, D) -> (B, H, T, D/H)."""
    batch, length, dim = x.shape
    return x.view(batch, length, num_heads, dim // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, D/H) -> (B, T, D)."""
    batch, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * dim)


def masked_softmax(scores: Tensor, key_padding_mask: Tensor | None) -> Tensor:
    """Softmax over the last axis that gives padded keys exactly zero weight.

    scores (B, H, T_q, T_k); key_padding_mask (B, T_k), True = padding. A row whose keys are
    all padding gets all-zero weights instead of NaN, and its gradient stays finite (the fill
    value is finite, so softmax never sees -inf - -inf).
    """
    if key_padding_mask is None:
        return torch.softmax(scores, dim=-1)
    pad = key_padding_mask[:, None, None, :]  # (B, 1, 1, T_k)
    filled = scores.masked_fill(pad, torch.finfo(scores.dtype).min)
    weights = torch.softmax(filled, dim=-1)
    return weights.masked_fill(pad, 0.0)


class Attention(nn.Module, ABC):
    """Base class: masking, softmax, heads and the weighted sum live here, once.

    A variant implements `score` and, where it has one, the key projection `prepare_keys`,
    which a decoder calls once per source sentence rather than once per target step.
    """

    #: the registry name, set by `register`
    name: str = ""

    def __init__(self, query_dim: int, key_dim: int, num_heads: int = 1) -> None:
        super().__init__()
        if query_dim <= 0 or key_dim <= 0:
            raise ValueError(f"query_dim and key_dim must be positive, got {query_dim}, {key_dim}")
        if num_heads <= 0:
            raise ValueError(f"num_heads must be positive, got {num_heads}")
        self.query_dim = query_dim
        self.key_dim = key_dim
        self.num_heads = num_heads

    def prepare_keys(self, keys: Tensor) -> Tensor:
        """keys (B, T_k, D_k) -> whatever `score` consumes, (B, T_k, D_s). Identity by default."""
        return keys

    @abstractmethod
    def score(self, query: Tensor, prepared_keys: Tensor) -> Tensor:
        """query (B, T_q, D_q), prepared_keys (B, T_k, D_s) -> raw scores (B, H, T_q, T_k)."""

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        key_padding_mask: Tensor | None = None,
        prepared_keys: Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend; returns (context (B, T_q, D_v), weights (B, T_q, T_k), averaged over heads).

        Pass `prepared_keys = self.prepare_keys(keys)` when attending to the same keys many
        times (a decoder's steps): the key projection is then not recomputed.
        `need_weights=False` (as in torch.nn.MultiheadAttention) returns (context, None): a
        variant may then use a fused kernel that never materialises the weights.
        """
        if prepared_keys is None:
            prepared_keys = self.prepare_keys(keys)
        scores = self.score(query, prepared_keys)  # (B, H, T_q, T_k)
        weights = masked_softmax(scores, key_padding_mask)
        if self.num_heads == 1:
            context = torch.matmul(weights.squeeze(1), values)
            return context, weights.squeeze(1) if need_weights else None
        context = merge_heads(torch.matmul(weights, self.value_heads(values)))
        return context, weights.mean(dim=1) if need_weights else None

    def value_heads(self, values: Tensor) -> Tensor:
        """values (B, T_k, D_v) -> (B, H, T_k, D_v / H); D_v must divide by H."""
        if values.shape[-1] % self.num_heads:
            raise ValueError(
                f"value dim {values.shape[-1]} is not divisible by num_heads={self.num_heads}"
            )
        return split_heads(values, self.num_heads)
