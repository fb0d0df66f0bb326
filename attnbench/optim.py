"""The optimizer every training step uses, the trainer's and the benchmark's alike.

One constructor so the benchmark times the step training runs. Adam runs PyTorch's fused
kernel (one pass over parameters, gradients and both moments, instead of a dozen tensor ops
per parameter) where PyTorch has one for the parameters' device and dtype: on this 2-core CPU
it made the Adam step of the hidden-512 benchmark model 3-4x faster
(`reports/benchmarks/cpu/key_projection_breakdown.py`). Elsewhere the default implementation.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def adam(parameters: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam over `parameters`, fused where PyTorch supports it for them."""
    params = list(parameters)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except RuntimeError:  # a device or dtype without a fused kernel (PyTorch checks both)
        return torch.optim.Adam(params, lr=lr)
