"""A float32 tanh as a rational function for Inductor: the CPU tanh limit, a CPU kernel's tanh.

The tanh limit is the fastest float32 tanh the device offers. NumPy's `np.tanh` is that on
AVX-512 hosts (its SIMD loop is such a rational approximation, ~5e9/s per core), but on an
AVX2-only host (AMD Zen 3, most laptops) NumPy 2.4 runs float32 tanh at ~3e8/s per core and
`torch.tanh` no faster, so a limit taken from those two understates the hardware several
times and any tanh-bound path reads a flattering fraction of it. Eigen's approximation (the
one NumPy and Eigen vectorise) written as torch operations and fused by `torch.compile` into
one vectorised C++ loop is a tanh the CPU does offer: on a Zen 3 host, over an outer sum
x_i + y_j as additive attention evaluates it, it ran at 1.8-2.1e9/s on two threads, ~4x both
library tanh (reports/benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch
from torch import Tensor

#: beyond this |x| the float32 result is +-1 (Eigen's clamp)
CLAMP = 7.90531110763549805
#: odd numerator, coefficients of x, x^3, ..., x^13 (Eigen's generic_fast_tanh_float)
NUMERATOR = (
    4.89352455891786e-03,
    6.37261928875436e-04,
    1.48572235717979e-05,
    5.12229709037114e-08,
    -8.60467152213735e-11,
    2.00018790482477e-13,
    -2.76076847742355e-16,
)
#: even denominator, coefficients of 1, x^2, x^4, x^6
DENOMINATOR = (
    4.89352518554385e-03,
    2.26843463243900e-03,
    1.18534705686654e-04,
    1.19825839466702e-06,
)


def _poly(x2: Tensor, coefficients: tuple[float, ...]) -> Tensor:
    """sum_k c_k x2^k by Horner's rule."""
    result = torch.full_like(x2, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        result = result * x2 + c
    return result


def rational_tanh(x: Tensor) -> Tensor:
    """x (any shape, float) -> tanh(x) to ~3e-7 absolute in float32; NaN stays NaN.

    Eager, this is ~15 passes over x: it pays only inside a function `torch.compile` fuses.
    """
    x = x.clamp(-CLAMP, CLAMP)
    x2 = x * x
    return x * _poly(x2, NUMERATOR) / _poly(x2, DENOMINATOR)


def rational_tanh_outer_sum(x: Tensor, y: Tensor) -> Tensor:
    """x (N,), y (M,) -> sum_ij tanh(x_i + y_j), the (N, M) tanh never stored once compiled."""
    return rational_tanh(x[:, None] + y[None, :]).sum()


@cache
def compiled_rational_tanh_outer_sum() -> Callable[[Tensor, Tensor], Tensor]:
    """`rational_tanh_outer_sum` fused into one loop by Inductor (compiled on first call: ~20 s
    cold, ~3 s from Inductor's on-disk cache; needs a C++ compiler)."""
    return torch.compile(rational_tanh_outer_sum, dynamic=False)
