"""One grid cell: build the inputs, time the implementation, measure its peak memory.

On CUDA a cell runs in the benchmark's own process. On the CPU it runs in a child process of
its own so that its peak RSS belongs to that configuration alone; the child caps its address
space so that running out of memory is an allocation error, recorded in the row, rather than
the OOM killer. Children are forked from a multiprocessing forkserver that imported torch and
this module once: a fresh interpreter per cell spent ~1.5 s (3-4 s on a slower host) importing
torch, more than most cells take to time.
"""

from __future__ import annotations

import ctypes
import multiprocessing
from dataclasses import replace
from multiprocessing.context import BaseContext
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


#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_CONTEXT: list[BaseContext] = []


def _child_context() -> BaseContext:
    """The forkserver the CPU cells are forked from (started on first use); where there is
    none (Windows), fresh interpreters as before."""
    if not _CONTEXT:
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
        else:
            context = multiprocessing.get_context("spawn")
        _CONTEXT.append(context)
    return _CONTEXT[0]


def _fix_malloc_thresholds() -> None:
    """A fixed mmap threshold: glibc otherwise raises it after the first large free and keeps
    later tensors in its heap, so warm-up memory would stay resident and hide the peak.
    (What MALLOC_MMAP_THRESHOLD_ does at start-up; a forked child sets it with mallopt.)"""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 65536)
        libc.mallopt(_M_TRIM_THRESHOLD, 131072)
    except (OSError, AttributeError):  # not glibc: its default thresholds
        pass


def _child(send: Any, fields: dict[str, Any], warmup: int, repeats: int, seconds: float) -> None:
    _fix_malloc_thresholds()
    memory.cap_address_space()
    cell = Cell(**{k: v for k, v in fields.items() if k != "family"})
    try:
        row = run_cell(cell, warmup, repeats, seconds, rss=True)
    except BaseException as exc:  # anything run_cell does not record: the parent says what
        row = {**fields, "status": f"error: in the child: {type(exc).__name__}: {exc}"[:300]}
    send.send(row)
    send.close()


def run_cell_in_child(
    cell: Cell, warmup: int, repeats: int, max_seconds: float, timeout_s: float
) -> dict[str, Any]:
    """Run one CPU cell in a child process of its own (forked, see the module's docstring);
    its row back. A child killed by the kernel (SIGKILL: the OOM killer) is 'out of memory'."""
    context = _child_context()
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_child,
        args=(send, cell.to_dict(), warmup, repeats, max_seconds),
        name=f"attnbench-cell-{cell.implementation}-{cell.length}",
        daemon=True,
    )
    child.start()
    send.close()  # the child holds the only writer: its exit ends the pipe
    row: dict[str, Any] | None = None
    timed_out = False
    try:
        if receive.poll(timeout_s):
            row = receive.recv()
        else:
            timed_out = True
    except EOFError:  # the child died before it sent a row
        pass
    finally:
        receive.close()
        child.join(timeout=0 if timed_out else 30)
        if child.is_alive():
            child.kill()
            child.join()
    if row is not None:
        return row
    if timed_out:
        return {**cell.to_dict(), "status": f"timeout after {timeout_s:.0f} s"}
    if child.exitcode == -9:
        return {**cell.to_dict(), "status": "out of memory (child killed)"}
    return {**cell.to_dict(), "status": f"error: child exited {child.exitcode} without a row"}
