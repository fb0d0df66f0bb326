"""Attention forward throughput per variant and length, on CPU or CUDA.

Timings use warm-up runs first and synchronised clocks (CUDA is synchronised before reading
the clock), and report the median and inter-quartile range over repeats. Speed claims are
ratios taken side by side in one run; absolute numbers vary between machines.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from attnbench.attention import build_attention


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(
    variant: str,
    length: int,
    batch: int,
    dim: int,
    device: torch.device | str = "cpu",
    repeats: int = 5,
    warmup: int = 1,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """One grid cell: T_q = T_k = `length`, D_q = D_k = D_v = `dim`, no gradients.

    Returns a tidy row; out of memory is recorded in the row (`status`), not raised.
    """
    device = torch.device(device)
    row: dict[str, Any] = {
        "variant": variant, "length": length, "batch": batch, "dim": dim,
        "device": device.type, "mode": "forward", "chunk_size": chunk_size,
    }  # fmt: skip
    options = {"chunk_size": chunk_size} if chunk_size else {}
    gen = torch.Generator().manual_seed(0)
    try:
        att = build_attention(variant, dim, dim, **options).to(device).eval()
        q = torch.randn(batch, length, dim, generator=gen).to(device)
        k = torch.randn(batch, length, dim, generator=gen).to(device)
        mask = torch.zeros(batch, length, dtype=torch.bool, device=device)
        mask[:, length - length // 8 :] = True  # some padding, as in real batches
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        with torch.no_grad():
            for i in range(warmup + repeats):
                _sync(device)
                tic = time.perf_counter()
                att(q, k, k, key_padding_mask=mask)
                _sync(device)
                if i >= warmup:
                    times.append(time.perf_counter() - tic)
    except torch.OutOfMemoryError:
        return {**row, "status": "out of memory"}
    median = statistics.median(times)
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [median, median, median]
    row.update(
        status="ok",
        seconds_median=median,
        seconds_iqr=quartiles[2] - quartiles[0],
        queries_per_s=batch * length / median,
        peak_memory_mb=(
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        ),
    )
    return row


def attention_grid(
    variants: list[str], lengths: list[int], batch: int, dim: int, device: str = "cpu"
) -> list[dict[str, Any]]:
    """Every variant at every length: the rows of the long-sequence table."""
    return [time_forward(v, n, batch, dim, device) for v in variants for n in lengths]
