"""Where the CPU inference kernel beats AdditiveAttention's reference path, to set
`attnbench.attention.additive.CPU_KERNEL_MIN_WORK` (see ../README.md).

    python reports/benchmarks/cpu/cpu_kernel_threshold.py [--repeats 15] [--backends numpy,inductor]

Times `AdditiveAttention(...)(need_weights=True)` (the reference path) and
`need_weights=False` with the kernel forced on, once per kernel backend, under no_grad, over
decoder-like shapes (one query per step) and short blocks of queries; prints ref/kernel per
shape and backend with the kernel's work per (batch row, head), T_q * T_k * a. Inductor's
compile is paid before the first timing.
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


def ratios(
    batch: int, t_q: int, t_k: int, dim: int, repeats: int, backends: list[str]
) -> list[float]:
    """Reference-path time / kernel time for one shape, per backend, no_grad."""
    att = AdditiveAttention(dim, dim, dim)
    query, keys = torch.randn(batch, t_q, dim), torch.randn(batch, t_k, dim)
    prepared = att.prepare_keys(keys)

    def call(need_weights: bool) -> Callable[[], object]:
        return lambda: att(query, keys, keys, prepared_keys=prepared, need_weights=need_weights)

    with torch.no_grad():
        reference = median_seconds(call(True), repeats)
        kernel = []
        for backend in backends:
            additive.CPU_KERNEL_BACKEND = backend
            kernel.append(median_seconds(call(False), repeats))
    return [reference / seconds for seconds in kernel]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--backends", default="numpy,inductor", help="kernel backends to time, comma-separated"
    )
    args = parser.parse_args()
    backends = args.backends.split(",")
    additive.CPU_KERNEL_MIN_WORK = 0  # the kernel at every shape, to compare it
    additive.CPU_SCORES_MIN_WORK = 2**62  # and the reference path on the formula throughout
    print(f"{torch.get_num_threads()} threads, median of {args.repeats}")
    columns = " | ".join(f"reference / {backend}" for backend in backends)
    print(
        f"| B | T_q | T_k | a | T_q*T_k*a | {columns} |\n|---|---|---|---|---|"
        + "---|" * len(backends)
    )
    for batch, t_q, t_k, dim in itertools.product((16, 64), (1, 8), (16, 64, 128), (128, 512)):
        speedups = ratios(batch, t_q, t_k, dim, args.repeats, backends)
        cells = " | ".join(f"{s:.2f}x" for s in speedups)
        print(f"| {batch} | {t_q} | {t_k} | {dim} | {t_q * t_k * dim} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
