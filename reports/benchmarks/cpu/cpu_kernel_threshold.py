"""Where the NumPy CPU inference kernel beats AdditiveAttention's reference path, to set
`attnbench.attention.additive.CPU_KERNEL_MIN_WORK` (see ../README.md).

    python reports/benchmarks/cpu/cpu_kernel_threshold.py [--repeats 15]

Times `AdditiveAttention(...)(need_weights=True)` (the reference path) and
`need_weights=False` with the kernel forced on, under no_grad, over decoder-like shapes
(one query per step) and short blocks of queries; prints ref/kernel per shape with the
kernel's work per (batch row, head), T_q * T_k * a.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

import torch

from attnbench.attention import additive
from attnbench.attention.additive import AdditiveAttention


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def ratio(batch: int, t_q: int, t_k: int, dim: int, repeats: int) -> float:
    """Reference-path time / kernel time for one shape, no_grad."""
    att = AdditiveAttention(dim, dim, dim)
    query, keys = torch.randn(batch, t_q, dim), torch.randn(batch, t_k, dim)
    prepared = att.prepare_keys(keys)

    def call(need_weights: bool) -> Callable[[], object]:
        return lambda: att(query, keys, keys, prepared_keys=prepared, need_weights=need_weights)

    with torch.no_grad():
        return median_seconds(call(True), repeats) / median_seconds(call(False), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    additive.CPU_KERNEL_MIN_WORK = 0  # the kernel at every shape, to compare it
    print(f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print("| B | T_q | T_k | a | T_q*T_k*a | reference / kernel |\n|---|---|---|---|---|---|")
    for batch, t_q, t_k, dim in itertools.product((16, 64), (1, 8), (16, 64, 128), (128, 512)):
        speedup = ratio(batch, t_q, t_k, dim, args.repeats)
        print(f"| {batch} | {t_q} | {t_k} | {dim} | {t_q * t_k * dim} | {speedup:.2f}x |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
