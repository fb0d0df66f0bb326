"""Multiplicative attention: the score is a (projected, possibly scaled) dot product.

    dot        score = q . k                         Luong et al. 2015, eq. 8 ("dot")
    general    score = q . W_a k                     Luong et al. 2015, eq. 8 ("general")
    scaled_dot score = q . k / sqrt(d)               Vaswani et al. 2017, eq. 1

With `attn_dim=A`, `general` and `scaled_dot` project both sides to A before scoring
(query_proj = Linear(D_q, A), key_proj = Linear(D_k, A), no biases): Britz et al. 2017's
"attention dimension". `scaled_dot` then divides by sqrt(A / H).

`forward(..., need_weights=False)` (training) computes the same context with PyTorch's fused
`scaled_dot_product_attention`, passing the variant's own scale: additive attention gets its
fused Triton kernel on CUDA the same way, and a cost comparison between the families must
not give only one side a fused path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbench.attention.base import Attention, merge_heads, split_heads


class MultiplicativeAttention(Attention):
    """Shared machinery of the dot-product family; subclasses only pick projections and scale."""

    #: whether a key projection W_a exists when attn_dim is None
    project_keys: bool = False
    #: whether scores are divided by sqrt(per-head scoring dimension)
    scaled: bool = False

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        attn_dim: int | None = None,
        num_heads: int = 1,
    ) -> None:
        super().__init__(query_dim, key_dim, num_heads)
        self.query_proj: nn.Linear | None = None
        self.key_proj: nn.Linear | None = None
        if attn_dim is not None:
            if attn_dim <= 0:
                raise ValueError(f"attn_dim must be positive, got {attn_dim}")
            self.query_proj = nn.Linear(query_dim, attn_dim, bias=False)
            self.key_proj = nn.Linear(key_dim, attn_dim, bias=False)
            score_dim = attn_dim
        elif self.project_keys:
            self.key_proj = nn.Linear(key_dim, query_dim, bias=False)
            score_dim = query_dim
        else:
            if query_dim != key_dim:
                raise ValueError(
                    f"'{self.name}' attention needs query_dim == key_dim, got {query_dim} and "
                    f"{key_dim}; use 'general' or set attn_dim to project both sides"
                )
            score_dim = query_dim
        if score_dim % num_heads:
            raise ValueError(f"scoring dim {score_dim} is not divisible by num_heads={num_heads}")
        self.attn_dim = attn_dim
        self.scale = 1.0 / math.sqrt(score_dim // num_heads) if self.scaled else 1.0

    def prepare_keys(self, keys: Tensor) -> Tensor:
        """keys (B, T_k, D_k) -> projected keys (B, T_k, D_s) (identity without a projection)."""
        return keys if self.key_proj is None else self.key_proj(keys)

    def _heads(self, query: Tensor, prepared_keys: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, T_q, D_q), prepared_keys (B, T_k, D_s) -> (B, H, T_q, d), (B, H, T_k, d)."""
        if self.query_proj is not None:
            query = self.query_proj(query)
        return split_heads(query, self.num_heads), split_heads(prepared_keys, self.num_heads)

    def score(self, query: Tensor, prepared_keys: Tensor) -> Tensor:
        """query (B, T_q, D_q), prepared_keys (B, T_k, D_s) -> scores (B, H, T_q, T_k)."""
        q, k = self._heads(query, prepared_keys)
        scores = torch.matmul(q, k.transpose(-1, -2))
        return scores * self.scale if self.scaled else scores

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        key_padding_mask: Tensor | None = None,
        prepared_keys: Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """As `Attention.forward`; with `need_weights=False` through fused SDPA."""
        if need_weights:
            return super().forward(
                query, keys, values, key_padding_mask, prepared_keys, need_weights=True
            )
        v = self.value_heads(values)
        if prepared_keys is None:
            prepared_keys = self.prepare_keys(keys)
        q, k = self._heads(query, prepared_keys)
        if key_padding_mask is None:
            context = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
            return merge_heads(context), None
        # SDPA's boolean mask is True where a key takes part. A row with no key at all: torch
        # 2.13's CPU kernels return zeros for it, but not every backend or version promises
        # that (NaN would spread into the gradients), so it sees every key and its context
        # is zeroed after, as masked_softmax's all-zero weights give. Two (B, T_k) ops.
        empty = key_padding_mask.all(dim=-1)  # (B,)
        take_part = ~(key_padding_mask & ~empty[:, None])
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=take_part[:, None, None, :], scale=self.scale
        )
        context = context.masked_fill(empty[:, None, None, None], 0.0)
        return merge_heads(context), None


class DotAttention(MultiplicativeAttention):
    """Luong 'dot': no parameters; needs query and key of equal size."""


class GeneralAttention(MultiplicativeAttention):
    """Luong 'general': a bilinear form q^T W_a k."""

    project_keys = True


class ScaledDotAttention(MultiplicativeAttention):
    """Vaswani's scaled dot product: keeps score variance ~1 as the dimension grows."""

    scaled = True
