"""Random attention inputs in head layout, the layout the fused kernels take.

Shapes (B batch, H heads, T_q queries, T_k keys, a per-head scoring dim, dv per-head value dim):
    query    (B, H, T_q, a)   projected queries (W_a s for additive, q for multiplicative)
    keys     (B, H, T_k, a)   projected keys (U_a h + b for additive, k for multiplicative)
    v_weight (H, a)           additive's v_a per head; None for multiplicative
    values   (B, H, T_k, dv)
    mask     (B, T_k) bool, True = padding; the last `T_k // 8` keys of every row are padding
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Shape:
    batch: int
    heads: int
    length_q: int
    length_k: int
    dim: int  # a (additive) or d (multiplicative), per head
    value_dim: int


@dataclass
class Problem:
    query: Tensor
    keys: Tensor
    values: Tensor
    mask: Tensor
    v_weight: Tensor | None

    def tensors(self) -> list[Tensor]:
        """The float inputs (those that take gradients in the backward mode)."""
        out = [self.query, self.keys, self.values]
        return out if self.v_weight is None else [*out, self.v_weight]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Problem:
        moved = {
            name: getattr(self, name).to(device=device, dtype=dtype)
            for name in ("query", "keys", "values")
        }
        v = None if self.v_weight is None else self.v_weight.to(device=device, dtype=dtype)
        return replace(self, **moved, mask=self.mask.to(device), v_weight=v)

    def requires_grad_(self) -> Problem:
        for t in self.tensors():
            t.requires_grad_(True)
        return self


def padding_mask(batch: int, length_k: int, device: torch.device | str = "cpu") -> Tensor:
    """(B, T_k) bool: the last eighth of the keys is padding (at least one key stays real)."""
    mask = torch.zeros(batch, length_k, dtype=torch.bool, device=device)
    mask[:, length_k - length_k // 8 :] = True
    return mask


def make_problem(
    shape: Shape,
    family: str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> Problem:
    """Fresh random inputs for `family` ('additive' or 'multiplicative'), drawn on the CPU in
    float64 so that the same seed gives the same numbers on every device and dtype."""
    gen = torch.Generator().manual_seed(seed)
    s = shape

    def randn(*size: int) -> Tensor:
        return torch.randn(*size, generator=gen, dtype=torch.float64)

    problem = Problem(
        query=randn(s.batch, s.heads, s.length_q, s.dim),
        keys=randn(s.batch, s.heads, s.length_k, s.dim),
        values=randn(s.batch, s.heads, s.length_k, s.value_dim),
        mask=padding_mask(s.batch, s.length_k),
        v_weight=randn(s.heads, s.dim) / s.dim**0.5 if family == "additive" else None,
    )
    return problem.to(device, dtype)


def valid_keys(shape: Shape) -> int:
    """Keys per row that are not padding (what the work counts are based on)."""
    return shape.length_k - shape.length_k // 8
