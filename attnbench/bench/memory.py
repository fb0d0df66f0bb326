"""Peak memory of one cell, measured honestly on each device.

CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, minus what was
allocated before (the inputs). CPU: the cell runs in a child process of its own
(`cell.run_cell_in_child`); after warm-up it resets the kernel's peak-RSS mark
(`/proc/self/clear_refs` <- 5, Linux >= 4.0) and reads `VmHWM` after the timed calls, so the
peak is that of the timed calls alone, not of imports, torch.compile or the memory the child
shares with the process it was forked from. Where the mark cannot be reset, `ru_maxrss` (peak
since the process started) is the fallback and the row says so.
"""

from __future__ import annotations

import resource
from pathlib import Path

import torch

MIB = 2**20


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float | None:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def reset_peak_rss() -> bool:
    """Reset the peak-RSS mark of this process; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024


def cap_address_space(fraction: float = 0.85) -> None:
    """Let allocations fail (a recorded 'out of memory') before the kernel's OOM killer picks a
    process: cap this process's address space at what it uses now plus `fraction` of the memory
    still available."""
    size, avail = _status_kib("VmSize"), None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1])
    except OSError:
        return
    if size is None or avail is None:
        return
    limit = (size + int(avail * fraction)) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def cuda_start(device: torch.device) -> float:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device) / MIB


def cuda_peak(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / MIB


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, and the CPU allocator's failure (a RuntimeError or MemoryError)."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text
    )
