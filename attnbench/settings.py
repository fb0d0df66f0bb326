"""Settings read from the environment by code deep below the CLI, checked when the CLI starts.

Without the early check a mistyped value would surface only when the code that reads it first
runs, e.g. at the first validation after a training epoch. Kept free of torch so `--help`
stays fast.
"""

from __future__ import annotations

import os

from attnbench.errors import UserError

#: the variables that stop Prefect's, MLflow's and generic (DO_NOT_TRACK) telemetry; every
#: entry point sets them unless the user already has
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def telemetry_off_by_default() -> None:
    """Set `TELEMETRY_OFF` in this process's environment where the user has not chosen."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


#: the CPU additive-attention kernel's backend (attention/kernels/cpu_additive.py); Inductor
#: (`inductor`, or `auto` where it compiles) also fuses the scores of CPU training in float32
#: (attention/kernels/cpu_scores.py)
CPU_KERNEL_BACKEND_ENV = "ATTNBENCH_CPU_KERNEL_BACKEND"
CPU_KERNEL_BACKENDS = ("auto", "numpy", "inductor")
#: NumPy by default: the Inductor backend is 1.7-2.4x faster per call from 2^18 tanh, but
#: its compile costs each process ~4 s (cached) to ~20 s, and in the presets' validation, the
#: one place the pipelines run this kernel (1-2 batches in 4-9), it saved nothing measurable
#: (reports/benchmarks/README.md). Long-sequence inference should set "auto", and so should
#: longer CPU training of additive attention: one multi30k-cpu epoch took 125 s against
#: 132-140 s, compiles included, and `quick`'s steps gain only 1.11x
DEFAULT_CPU_KERNEL_BACKEND = "numpy"


def cpu_kernel_backend() -> str:
    """The CPU kernel backend `ATTNBENCH_CPU_KERNEL_BACKEND` names (default numpy)."""
    value = os.environ.get(CPU_KERNEL_BACKEND_ENV, "").strip() or DEFAULT_CPU_KERNEL_BACKEND
    if value not in CPU_KERNEL_BACKENDS:
        raise UserError(
            f"{CPU_KERNEL_BACKEND_ENV}={value!r} is not a CPU kernel backend; "
            f"set it to one of {', '.join(CPU_KERNEL_BACKENDS)} or unset it (numpy)"
        )
    return value


def check_environment() -> None:
    """Every setting above, so a bad one stops a command before it does any work."""
    cpu_kernel_backend()
