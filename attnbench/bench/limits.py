"""Speed limits measured on the same device in the same run, beside data-sheet figures.

Additive attention is bounded by tanh: B*H*T_q*T_k*a evaluations. The bound is the fastest
float32 tanh the device offers on a cache-resident array, so several are tried and the best is
kept: torch.tanh, NumPy's SIMD np.tanh on one thread and threaded over chunks (NumPy releases
the GIL), on a CPU Eigen's rational tanh compiled by Inductor (the fastest on AVX2-only hosts,
where NumPy's float32 tanh is not vectorised), and on a GPU a Triton kernel doing only
`tanh.approx.f32`. Multiplicative attention is bounded by matmul: a large GEMM in the
benchmark's dtype, in FLOP/s, by torch and, on a CPU in float32, by NumPy's OpenBLAS too
(faster than torch's MKL on AMD hosts).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from attnbench.attention.kernels.rational_tanh import compiled_rational_tanh_outer_sum
from attnbench.bench.problem import DTYPES

#: elements per array: 64 Ki float32 = 256 KiB, resident in a CPU core's L2
CACHE_ELEMENTS = 2**16
#: the compiled tanh's call: tanh(x_i + y_j) over a 1024 x 1024 outer sum, then summed, as
#: additive attention uses tanh: 1 Mi tanh from 8 KiB of inputs, so no memory traffic bounds
#: it. On a 2-core Zen 3 host one call over a stored 1 MiB array ran ~1.5x slower (load, store,
#: the new output), and a 64 Ki array 2.5-3.5x slower (per-call cost: guards, the parallel region).
COMPILED_SIDE = 1024

#: (GPU name fragment, figures): SFU tanh = 16 results/SM/clock x SMs x boost clock
DATA_SHEET: list[tuple[str, dict[str, float], str]] = [
    (
        "H200",
        {
            "tanh": 16 * 132 * 1.83e9,
            "bfloat16": 989e12,
            "float16": 989e12,
            "float32": 67e12,
            "tf32": 494e12,
        },
        "H200 SXM data sheet, dense",
    ),
    (
        "H100",
        {
            "tanh": 16 * 132 * 1.83e9,
            "bfloat16": 989e12,
            "float16": 989e12,
            "float32": 67e12,
            "tf32": 494e12,
        },
        "H100 SXM data sheet, dense",
    ),
    (
        "A100",
        {
            "tanh": 16 * 108 * 1.41e9,
            "bfloat16": 312e12,
            "float16": 312e12,
            "float32": 19.5e12,
            "tf32": 156e12,
        },
        "A100 data sheet, dense",
    ),
]


def _rate(step: Callable[[], None], elements: float, seconds: float, trials: int = 3) -> float:
    """Best over `trials` of (elements per call x calls / time), each trial ~seconds long."""
    step()
    best = 0.0
    for _ in range(trials):
        calls, tic = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - tic) < seconds:
            step()
            calls += 1
        best = max(best, elements * calls / elapsed)
    return best


def _numpy_threaded(threads: int, seconds: float) -> float:
    """np.tanh on `threads` threads, each on its own cache-resident chunk."""
    chunks = [
        np.random.default_rng(i).uniform(-3, 3, CACHE_ELEMENTS).astype(np.float32)
        for i in range(threads)
    ]
    outs = [np.empty_like(c) for c in chunks]
    calls = 200

    def work(i: int) -> None:
        for _ in range(calls):
            np.tanh(chunks[i], out=outs[i])

    with ThreadPoolExecutor(threads) as pool:

        def step() -> None:
            list(pool.map(work, range(threads)))

        return _rate(step, float(CACHE_ELEMENTS * calls * threads), seconds)


def _compiled_tanh(seconds: float) -> tuple[str, float, str]:
    """(method, tanh/s, note) of Inductor's rational tanh; NaN with the reason if it failed."""
    method = f"rational tanh, torch.compile ({torch.get_num_threads()} threads)"
    try:
        outer_sum = compiled_rational_tanh_outer_sum()
        x, y = (torch.empty(COMPILED_SIDE).uniform_(-3, 3) for _ in range(2))
        rate = _rate(lambda: outer_sum(x, y), COMPILED_SIDE**2, seconds)
        return method, rate, "Eigen's float32 tanh of x_i + y_j, fused: no loads or stores"
    except Exception as exc:  # no C++ compiler, an Inductor failure: the other methods stand
        return method, float("nan"), f"not measured: {type(exc).__name__}: {exc}"


#: seconds of one timed trial of a tanh and of a matmul limit (each is measured 3 times)
TANH_TRIAL_S = 0.2
MATMUL_TRIAL_S = 0.3


def tanh_limits(device: str, seconds: float = TANH_TRIAL_S) -> list[dict[str, Any]]:
    """float32 tanh/s by every method available on `device`."""
    rows: list[dict[str, Any]] = []

    def add(method: str, rate: float, note: str = "") -> None:
        rows.append(
            {
                "limit": "tanh",
                "method": method,
                "dtype": "float32",
                "unit": "tanh/s",
                "rate": rate,
                "source": "measured",
                "note": note,
            }
        )

    if device == "cpu":
        x = torch.empty(CACHE_ELEMENTS).uniform_(-3, 3)
        y = torch.empty_like(x)
        add(
            f"torch.tanh ({torch.get_num_threads()} threads)",
            _rate(lambda: torch.tanh(x, out=y), CACHE_ELEMENTS, seconds),
        )
        a, b = x.numpy(), y.numpy()
        add("np.tanh (1 thread)", _rate(lambda: np.tanh(a, out=b), CACHE_ELEMENTS, seconds))
        threads = max(torch.get_num_threads(), os.cpu_count() or 1)
        add(f"np.tanh ({threads} threads)", _numpy_threaded(threads, seconds))
        add(*_compiled_tanh(seconds))
        return rows
    n = 2**24
    x = torch.rand(n, device=device) * 6 - 3
    y = torch.empty_like(x)

    def torch_step() -> None:
        torch.tanh(x, out=y)
        torch.cuda.synchronize()

    add("torch.tanh", _rate(torch_step, n, seconds), "memory-bound: one load and store per tanh")
    try:
        from attnbench.attention.kernels.tanh_limit import tanh_rate

        add("triton tanh.approx.f32", tanh_rate(), "256 dependent tanh per element in registers")
    except Exception as exc:
        add("triton tanh.approx.f32", float("nan"), f"not measured: {type(exc).__name__}: {exc}")
    return rows


def matmul_limits(device: str, dtype: str, seconds: float = MATMUL_TRIAL_S) -> list[dict[str, Any]]:
    """GEMM FLOP/s in the benchmark's dtype (and float32, which the CPU runs natively)."""
    n = 2048 if device == "cpu" else 8192
    rows = []

    def add(method: str, name: str, rate: float, note: str = "") -> None:
        rows.append({"limit": "matmul", "method": method, "dtype": name, "unit": "FLOP/s",
                     "rate": rate, "source": "measured", "note": note})  # fmt: skip

    for name in dict.fromkeys([dtype, "float32"]):
        a = torch.randn(n, n, device=device, dtype=DTYPES[name])
        b, c = torch.randn_like(a), torch.empty_like(a)

        def step(a=a, b=b, c=c) -> None:
            torch.matmul(a, b, out=c)
            if device == "cuda":
                torch.cuda.synchronize()

        note = "TF32 off" if device == "cuda" and name == "float32" else ""
        add(f"torch.matmul {n}^3", name, _rate(step, 2.0 * n**3, seconds), note)
        if device == "cpu" and name == "float32":
            x, y, z = a.numpy(), b.numpy(), c.numpy()

            def numpy_step(x=x, y=y, z=z) -> None:
                np.matmul(x, y, out=z)

            rate = _rate(numpy_step, 2.0 * n**3, seconds)
            add(f"np.matmul {n}^3", name, rate, "NumPy's BLAS (OpenBLAS)")
    return rows


def data_sheet(device: str) -> list[dict[str, Any]]:
    """Published peak figures for the GPU in use (none for CPUs: too varied to tabulate)."""
    if device != "cuda":
        return []
    gpu = torch.cuda.get_device_name(0)
    for fragment, figures, source in DATA_SHEET:
        if fragment in gpu:
            return [
                {
                    "limit": "tanh" if key == "tanh" else "matmul",
                    "method": f"data sheet ({gpu})",
                    "dtype": "float32" if key in ("tanh", "tf32") else key,
                    "unit": "tanh/s" if key == "tanh" else "FLOP/s",
                    "rate": value,
                    "source": "data sheet",
                    "note": f"{source}{' (TF32)' if key == 'tf32' else ''}",
                }
                for key, value in figures.items()
            ]
    return []


#: a limit that moved more than this between the start and the end of a run is reported
DRIFT_WARNING = 0.10


def measure_limits(
    device: str, dtype: str, when: str = "start", max_trial_s: float = float("inf")
) -> list[dict[str, Any]]:
    """Every limit measured now, tagged `when`; the data-sheet figures only with "start".

    The runner measures at the start and again at the end of a run: a shared VM's or a
    throttling GPU's speed can move within one run, and a fraction of a limit is only as
    good as the limit's stability over the cells it divides. Each timed trial lasts
    TANH_TRIAL_S or MATMUL_TRIAL_S, at most `max_trial_s`.
    """
    found = (
        *tanh_limits(device, min(TANH_TRIAL_S, max_trial_s)),
        *matmul_limits(device, dtype, min(MATMUL_TRIAL_S, max_trial_s)),
    )
    measured = [{**r, "when": when} for r in found]
    sheet = [{**r, "when": ""} for r in data_sheet(device)] if when == "start" else []
    return measured + sheet


def drift(limits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per limit (tanh; matmul per dtype): the best rate at the start, at the end, and the
    relative change; the fractions divide by the best, so that is the change that matters."""
    pairs = dict.fromkeys((r["limit"], r["dtype"]) for r in limits if r.get("when") == "end")
    out = []
    for limit, dtype in pairs:
        start, end = (best(limits, limit, dtype, when) for when in ("start", "end"))
        if start and end:
            out.append({"limit": limit, "dtype": dtype, "start": start, "end": end,
                        "change": end / start - 1.0})  # fmt: skip
    return out


def best(
    limits: list[dict[str, Any]], limit: str, dtype: str | None = None, when: str | None = None
) -> float | None:
    """The fastest measured rate of `limit` ('tanh' or 'matmul'; matmul in `dtype`), over the
    whole run or only its `when` ("start", "end") measurements."""
    rates = [
        r["rate"]
        for r in limits
        if r["limit"] == limit
        and r["source"] == "measured"
        and r["rate"] == r["rate"]
        and (limit == "tanh" or r["dtype"] == dtype)
        and (when is None or r.get("when") == when)
    ]
    return max(rates) if rates else None
