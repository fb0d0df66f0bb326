"""Additive attention, Bahdanau et al. 2015, appendix A.1.2:

    e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)

here `score = v(tanh(query_proj(q) + key_proj(k)))` with query_proj = W_a (no bias),
key_proj = U_a (with the bias the reference implementations carry), v = v_a.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnbench.attention.base import Attention, split_heads


class AdditiveAttention(Attention):
    """Bahdanau attention. `chunk_size` bounds memory on long inputs.

    The naive score builds a (B, H, T_q, T_k, A/H) tensor; with `chunk_size=c` the keys are
    scored c at a time, so at most (B, H, T_q, c, A/H) exists at once. Results are equal.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        attn_dim: int | None = None,
        num_heads: int = 1,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(query_dim, key_dim, num_heads)
        attn_dim = query_dim if attn_dim is None else attn_dim
        if attn_dim <= 0 or attn_dim % num_heads:
            raise ValueError(f"attn_dim={attn_dim} must be positive and divisible by num_heads")
        if chunk_size is not None and chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.attn_dim = attn_dim
        self.chunk_size = chunk_size
        self.query_proj = nn.Linear(query_dim, attn_dim, bias=False)
        self.key_proj = nn.Linear(key_dim, attn_dim, bias=True)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def prepare_keys(self, keys: Tensor) -> Tensor:
        """keys (B, T_k, D_k) -> U_a h_j + b, (B, T_k, A)."""
        return self.key_proj(keys)

    def score(self, query: Tensor, prepared_keys: Tensor) -> Tensor:
        """query (B, T_q, D_q), prepared_keys (B, T_k, A) -> scores (B, H, T_q, T_k)."""
        heads = self.num_heads
        q = split_heads(self.query_proj(query), heads).unsqueeze(3)  # (B, H, T_q, 1, a)
        k = split_heads(prepared_keys, heads).unsqueeze(2)  # (B, H, 1, T_k, a)
        v = self.v.weight.view(heads, 1, self.attn_dim // heads, 1)  # (H, 1, a, 1)
        t_k = k.shape[3]
        step = t_k if self.chunk_size is None else self.chunk_size
        chunks = [
            torch.matmul(torch.tanh(q + k[:, :, :, start : start + step]), v).squeeze(-1)
            for start in range(0, t_k, step)
        ]  # each (B, H, T_q, c)
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=-1)
