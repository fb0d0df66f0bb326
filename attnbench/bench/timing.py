"""Wall time of a call: warm-up first, then repeats on synchronised clocks.

On CUDA each repeat is bracketed by CUDA events (device time, no host jitter); on the CPU by
`time.perf_counter`. The number of repeats shrinks when one call is slow, so a cell never runs
much past its share of the time budget, but never below `min_repeats`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Timing:
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def iqr(self) -> float:
        if len(self.seconds) < 2:
            return 0.0
        q = statistics.quantiles(self.seconds, n=4, method="inclusive")
        return q[2] - q[0]


def _one(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def measure(
    fn: Callable[[], object],
    device: torch.device | str,
    warmup: int = 1,
    repeats: int = 5,
    max_seconds: float = 30.0,
    min_repeats: int = 2,
    after_warmup: Callable[[], object] | None = None,
) -> Timing:
    """Time `fn` `repeats` times after `warmup` calls (fewer repeats when a call is slow);
    `after_warmup` runs between the two (e.g. to reset a peak-memory mark)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    first = None
    warm_start, calls = time.perf_counter(), 0
    # at least `warmup` calls, and short calls until ~0.2 s has passed: a fresh process's
    # first calls pay for thread start-up and page faults
    while calls < max(warmup, 1) or (time.perf_counter() - warm_start < 0.2 and calls < 100):
        took = _one(fn, device)
        first = took if first is None else min(first, took)
        calls += 1
    assert first is not None
    affordable = int(max_seconds / max(first, 1e-9))
    # short calls: more repeats (up to ~0.5 s of them) so the median is not one scheduler blip
    wanted = max(repeats, min(int(0.5 / max(first, 1e-9)), 200))
    count = max(min_repeats, min(wanted, affordable))
    if after_warmup is not None:
        after_warmup()
    return Timing([_one(fn, device) for _ in range(count)])
