"""Additive attention's scores on CPU, forward and backward, fused by Inductor: the training path.

Eager PyTorch builds the (B, H, T_q, T_k, a) sum q + k, its tanh (saved for the backward), the
tanh's gradient and the v products as separate tensors, and `torch.tanh` itself runs at
~4e8/s per thread (reports/benchmarks/README.md). Here `torch.compile` fuses the add, Eigen's
rational tanh (kernels/rational_tanh.py, ~3e-7 absolute in float32) and the v product into
one vectorised loop, and the backward recomputes the tanh instead of storing it, so no
(B, H, T_q, T_k, a) tensor is ever kept: the CPU counterpart of the Triton kernel's backward.

Each of the two functions compiles once per process for each attention width a (the batch
and both lengths are marked dynamic up front; a length of 1, a decoder step, is a graph of
its own): ~3-15 s, less from Inductor's on-disk cache. Compiling with every size dynamic
instead made the backward's reductions 5-7x slower on a Zen 3 host (not vectorised over a).
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from attnbench.attention.kernels.rational_tanh import rational_tanh


def _tanh_sum(q: Tensor, k: Tensor) -> Tensor:
    """q (B, H, T_q, a), k (B, H, T_k, a) -> tanh(q_i + k_j), (B, H, T_q, T_k, a)."""
    return rational_tanh(q.unsqueeze(3) + k.unsqueeze(2))


def _scores(q: Tensor, k: Tensor, w: Tensor) -> Tensor:
    """-> sum_a w[h, a] tanh(q_ia + k_ja), (B, H, T_q, T_k)."""
    return (_tanh_sum(q, k) * w[None, :, None, None, :]).sum(-1)


def _scores_backward(
    q: Tensor, k: Tensor, w: Tensor, grad: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """grad (B, H, T_q, T_k) of the scores -> gradients of q, k and w (their shapes)."""
    t = _tanh_sum(q, k)
    g = grad.unsqueeze(-1)
    pre = g * w[None, :, None, None, :] * (1 - t * t)  # gradient of q_i + k_j
    # w's over (T_q, T_k) per batch row first, then over B: one reduction over all three
    # leading dims was slower (17 vs 14 ms in a probe; ~2x with every size dynamic)
    return pre.sum(3), pre.sum(2), (g * t).sum((2, 3)).sum(0)


@cache
def _compiled_scores():
    return torch.compile(_scores)


@cache
def _compiled_scores_backward():
    return torch.compile(_scores_backward)


def _mark_dynamic(q: Tensor, k: Tensor, grad: Tensor | None = None) -> None:
    """The batch and both lengths dynamic, the width a static."""
    for x, dims in ((q, (0, 2)), (k, (0, 2)), (grad, (0, 2, 3))):
        for dim in dims if x is not None else ():
            torch._dynamo.maybe_mark_dynamic(x, dim)


class _FusedScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(q, k, w)
        _mark_dynamic(q, k)
        return _compiled_scores()(q, k, w)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        q, k, w = ctx.saved_tensors
        grad = grad.contiguous()
        _mark_dynamic(q, k, grad)
        return _compiled_scores_backward()(q, k, w, grad)


def fused_additive_scores(q: Tensor, k: Tensor, w: Tensor) -> Tensor:
    """Bahdanau scores e_ij = sum_a w[h, a] tanh(q_ia + k_ja), differentiable in all three.

    q (B, H, T_q, a) = W_a s per head; k (B, H, T_k, a) = U_a h + b per head; w (H, a) = v_a
    per head; all float32 on CPU. Returns scores (B, H, T_q, T_k), unmasked (the caller's
    softmax masks them). Accurate to float32 with Eigen's tanh (~3e-7 absolute per tanh).
    """
    if q.dtype != torch.float32 or q.device.type != "cpu":
        raise ValueError(f"fused_additive_scores takes float32 CPU tensors, got {q.dtype} "
                         f"on {q.device}")  # fmt: skip
    return _FusedScores.apply(q.contiguous(), k.contiguous(), w.contiguous())
