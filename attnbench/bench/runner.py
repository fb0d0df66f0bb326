"""Run the grid under a total time budget: limits first, then cells in priority order.

Every implementation is checked against the reference (per mode) before its first cell is
timed; a failed check marks all its cells 'mismatch'. Cells past the budget are recorded as
'skipped: time budget', and once an implementation runs out of memory at some length, its
longer lengths are recorded as skipped rather than tried.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from attnbench.bench import limits as limits_mod
from attnbench.bench.cell import run_cell, run_cell_in_child
from attnbench.bench.check import check
from attnbench.bench.grid import Cell, GridSpec, attention_cells
from attnbench.bench.implementations import REGISTRY, implementations, sdpa_backends
from attnbench.bench.problem import DTYPES, Shape, make_problem

#: rounds of each side of a full-model side-by-side comparison: with 5 a CPU training step's
#: IQR was ~10% of its median, as large as the ratios to resolve
COMPARISON_REPEATS = 15


@dataclass
class RunOptions:
    warmup: int = 1
    #: timed repeats per cell, and of the full model's training step and decoding rows
    repeats: int = 5
    #: rounds of each side of the full model's comparisons (key projection, fused path)
    comparison_repeats: int = COMPARISON_REPEATS
    #: seconds of timed repeats per cell (fewer repeats when one call is slow)
    cell_seconds: float = 20.0
    #: total budget for the whole run; cells after it are skipped
    max_seconds: float = 600.0
    #: 'subprocess' (CPU: fresh child per cell, honest peak RSS) or 'inline'
    isolation: str = "subprocess"
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))


@dataclass
class BenchResult:
    rows: list[dict[str, Any]]
    limits: list[dict[str, Any]]
    meta: dict[str, Any]


def environment(device: str) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
    }


def add_fractions(rows: list[dict[str, Any]], limits: list[dict[str, Any]]) -> None:
    """Each timed row's rate as a fraction of its family's limit measured in the same run."""
    for row in rows:
        if row.get("status") != "ok" or "work_unit" not in row:
            continue
        if row["work_unit"] == "tanh":
            limit = limits_mod.best(limits, "tanh")
        else:
            limit = limits_mod.best(limits, "matmul", row["dtype"])
        row["limit_per_s"] = limit
        row["fraction_of_limit"] = row["work_per_s"] / limit if limit else None


def run_benchmark(
    spec: GridSpec,
    options: RunOptions | None = None,
    model_rows: Callable[[GridSpec, RunOptions], list[dict[str, Any]]] | None = None,
) -> BenchResult:
    """Limits, then every cell of `spec` (forward, full-model modes, backward) in budget."""
    opts = options or RunOptions()
    start = time.perf_counter()
    left = lambda: opts.max_seconds - (time.perf_counter() - start)  # noqa: E731
    meta: dict[str, Any] = {"spec": spec.__dict__, "environment": environment(spec.device)}

    def measure_limits(when: str) -> list[dict[str, Any]]:
        # no timed trial of a limit runs longer than a cell's timed repeats (a smoke run's)
        return limits_mod.measure_limits(spec.device, spec.dtype, when, opts.cell_seconds)

    opts.log(f"limits on {spec.device} ...")
    limits = measure_limits("start")
    meta["sdpa_backends"] = _sdpa_report(spec)
    cells = attention_cells(spec)
    forward = [c for c in cells if c.mode != "backward"]
    backward = [c for c in cells if c.mode == "backward"]
    checked: dict[tuple[str, str], tuple[bool, float | None, str]] = {}
    oom: dict[tuple[str, str, int, int], int] = {}
    rows = [_run(c, opts, left, checked, oom) for c in forward]
    if "model" in spec.modes:
        rows += _model(spec, left, opts, model_rows)
    rows += [_run(c, opts, left, checked, oom) for c in backward]
    opts.log(f"limits on {spec.device} again (did the device's speed move?) ...")
    limits += measure_limits("end")
    add_fractions(rows, limits)
    meta["seconds"] = time.perf_counter() - start
    return BenchResult(rows, limits, meta)


def _sdpa_report(spec: GridSpec) -> dict[str, Any]:
    """Which SDPA backend runs (and on CUDA which ones accept the masked inputs)."""
    if "sdpa" not in {i.name for i in implementations(spec.device, spec.names, spec.families)}:
        return {}
    shape = Shape(spec.batches[0], spec.heads, 1024, 1024, spec.dims[0], spec.dims[0])
    try:
        return sdpa_backends(make_problem(shape, "multiplicative", spec.device, DTYPES[spec.dtype]))
    except Exception as exc:
        return {"chosen": f"unknown ({type(exc).__name__})", "working": []}


def _run(
    cell: Cell,
    opts: RunOptions,
    left: Callable[[], float],
    checked: dict[tuple[str, str], tuple[bool, float | None, str]],
    oom: dict[tuple[str, str, int, int], int],
) -> dict[str, Any]:
    impl = REGISTRY[cell.implementation]
    row = cell.to_dict()
    key = (cell.implementation, cell.mode, cell.batch, cell.dim)
    if left() <= 0:
        return {**row, "status": "skipped: time budget"}
    if (reason := impl.unavailable()) is not None:
        return {**row, "status": f"unavailable: {reason}"}
    if key in oom and cell.length > oom[key]:
        return {**row, "status": f"skipped: out of memory at length {oom[key]}"}
    if (cell.implementation, cell.mode) not in checked:
        checked[cell.implementation, cell.mode] = check(
            impl, cell.device, DTYPES[cell.dtype], cell.mode
        )
    ok, error, detail = checked[cell.implementation, cell.mode]
    if not ok:
        return {**row, "status": "mismatch", "max_abs_error": error, "note": detail}
    budget = max(1.0, min(opts.cell_seconds, left() / 2))
    if cell.device == "cpu" and opts.isolation == "subprocess":
        out = run_cell_in_child(cell, opts.warmup, opts.repeats, budget, timeout_s=budget * 6 + 120)
    else:
        out = run_cell(cell, opts.warmup, opts.repeats, budget)
    out["max_abs_error"] = error
    if str(out.get("status", "")).startswith("out of memory"):
        oom[key] = min(oom.get(key, cell.length), cell.length)
    opts.log(_line(out))
    return out


def _line(row: dict[str, Any]) -> str:
    where = f"{row['mode']:<8} {row['implementation']:<18} T={row['length']:<6}"
    if row.get("status") != "ok":
        return f"{where} {row.get('status')}"
    mem = row.get("peak_memory_mb")
    mem_text = "" if mem is None else f"  {mem:,.0f} MB"
    ms, tps = row["seconds_median"] * 1e3, row["tokens_per_s"]
    return f"{where} {ms:10.2f} ms  {tps:12,.0f} tok/s{mem_text}"


def _model(
    spec: GridSpec,
    left: Callable[[], float],
    opts: RunOptions,
    model_rows: Callable[[GridSpec, RunOptions], list[dict[str, Any]]] | None,
) -> list[dict[str, Any]]:
    """Full-model rows (training step, greedy decoding, key projection), from model_modes."""
    if left() <= 0:
        return [{"mode": "model", "device": spec.device, "status": "skipped: time budget"}]
    if model_rows is None:
        from attnbench.bench.full_model import model_rows
    try:
        rows = model_rows(spec, opts)
    except Exception as exc:
        return [
            {
                "mode": "model",
                "device": spec.device,
                "status": f"error: {type(exc).__name__}: {exc}".splitlines()[0][:300],
            }
        ]
    for row in rows:
        opts.log(f"{row.get('mode')} {row.get('implementation', '')} {row.get('status', 'ok')}")
    return rows
