"""One grid cell: build the inputs, time the implementation, measure its peak memory.

On CUDA a cell runs in the benchmark's own process. On the CPU it runs in a fresh child
(`python -m attnbench.bench.cell '<cell json>'`, which prints the row as JSON) so that its peak
RSS belongs to that configuration alone; the child caps its address space so that running out
of memory is an allocation error, recorded in the row, rather than the OOM killer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from typing import Any

import torch

from attnbench.bench import memory
from attnbench.bench.grid import Cell
from attnbench.bench.implementations import REGISTRY
from attnbench.bench.problem import DTYPES, Shape, make_problem, valid_keys
from attnbench.bench.timing import measure

#: forward + backward FLOPs relative to the forward's (FlashAttention's convention: bwd = 2.5x)
BACKWARD_FLOP_FACTOR = 3.5


def shape_of(cell: Cell) -> Shape:
    return Shape(cell.batch, cell.heads, cell.length, cell.length, cell.dim, cell.dim)


def work(cell: Cell) -> tuple[str, float]:
    """The quantity the cell's limit bounds: tanh evaluations (additive: B*H*T_q*T_k*a, the
    forward's count in both modes) or FLOPs (multiplicative: 4*B*H*T_q*T_k*d forward, 3.5x
    that forward + backward). T_k counts the keys that are not padding."""
    shape = shape_of(cell)
    pairs = cell.batch * cell.heads * cell.length * valid_keys(shape) * cell.dim
    if REGISTRY[cell.implementation].family == "additive":
        return "tanh", float(pairs)
    factor = BACKWARD_FLOP_FACTOR if cell.mode == "backward" else 1.0
    return "flop", 4.0 * pairs * factor


def run_cell(
    cell: Cell, warmup: int = 1, repeats: int = 5, max_seconds: float = 30.0, rss: bool = False
) -> dict[str, Any]:
    """Time one cell in this process. `rss`: measure peak RSS (only meaningful in a fresh
    child). Returns a tidy row; out of memory is a status, never an exception."""
    row: dict[str, Any] = cell.to_dict()
    impl = REGISTRY[cell.implementation]
    device, dtype = torch.device(cell.device), DTYPES[cell.dtype]
    unit, amount = work(cell)
    row.update(work_unit=unit, work=amount)
    peak_box: dict[str, float | None] = {}
    try:
        problem = make_problem(shape_of(cell), impl.family, device, dtype)
        if not impl.masked:
            problem = replace(problem, mask=torch.zeros_like(problem.mask))
        fn = impl.build(shape_of(cell))
        if cell.mode == "forward":

            def call() -> None:
                with torch.no_grad():
                    fn(problem)
        else:
            problem.requires_grad_()

            def call() -> None:
                for t in problem.tensors():
                    t.grad = None
                out = fn(problem)
                out.backward(torch.ones_like(out))

        def start_memory() -> None:
            if device.type == "cuda":
                peak_box["base"] = memory.cuda_start(device)
            elif rss:
                peak_box["base"] = memory.rss_mb()
                peak_box["reset"] = 1.0 if memory.reset_peak_rss() else 0.0

        timing = measure(call, device, warmup, repeats, max_seconds, after_warmup=start_memory)
        if device.type == "cuda":
            peak_box["peak"] = memory.cuda_peak(device)
        elif rss:
            peak_box["peak"] = memory.peak_rss_mb()
    except Exception as exc:
        if memory.is_out_of_memory(exc):
            row["status"] = "out of memory"
        else:
            row["status"] = f"error: {type(exc).__name__}: {exc}".splitlines()[0][:300]
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return row
    base, peak = peak_box.get("base"), peak_box.get("peak")
    if device.type == "cuda":
        method = "cuda max_memory_allocated minus allocated before the timed calls"
    elif rss and peak_box.get("reset"):
        method = "peak RSS of a fresh child during the timed calls minus RSS before them"
    elif rss:
        method = "peak RSS of a fresh child since start (peak mark not resettable) minus RSS"
    else:
        method = "not measured (CPU cell run in-process)"
    row.update(
        status="ok",
        seconds_median=timing.median,
        seconds_iqr=timing.iqr,
        seconds_min=min(timing.seconds),
        repeats=len(timing.seconds),
        tokens_per_s=cell.batch * cell.length / timing.median,
        work_per_s=amount / timing.median,
        peak_memory_mb=None if base is None or peak is None else max(peak - base, 0.0),
        total_peak_memory_mb=peak,
        memory_method=method,
    )
    return row


def run_cell_in_child(
    cell: Cell, warmup: int, repeats: int, max_seconds: float, timeout_s: float
) -> dict[str, Any]:
    """Run one CPU cell in a fresh `python -m attnbench.bench.cell` process; its row back."""
    payload = json.dumps(
        {"cell": cell.to_dict(), "warmup": warmup, "repeats": repeats, "max_seconds": max_seconds}
    )
    cmd = [sys.executable, "-m", "attnbench.bench.cell", payload]
    # a fixed mmap threshold: glibc otherwise raises it after the first large free and keeps
    # later tensors in its heap, so warm-up memory would stay resident and hide the peak
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "131072"}
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        return {**cell.to_dict(), "status": f"timeout after {timeout_s:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    if done.returncode == -9:
        return {**cell.to_dict(), "status": "out of memory (child killed)"}
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
    return {**cell.to_dict(), "status": f"error: child exited {done.returncode}: {tail}"}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    fields = {k: v for k, v in spec["cell"].items() if k != "family"}
    memory.cap_address_space()
    row = run_cell(Cell(**fields), spec["warmup"], spec["repeats"], spec["max_seconds"], rss=True)
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
