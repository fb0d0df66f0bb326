"""Specialised attention kernels: fast paths that compute what `attnbench.attention` defines.

Nothing here is imported eagerly: `triton_additive` imports triton (an optional extra) and
must be imported after TRITON_INTERPRET is decided, so callers import it when they need it.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType


def triton_available() -> bool:
    """Whether the fused Triton kernels can run here.

    True when triton imports and either CUDA is available or TRITON_INTERPRET=1 (the CPU
    interpreter, for tests).
    """
    try:
        import triton  # noqa: F401
    except Exception:  # absent, or a broken install: either way, no kernels
        return False
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return True
    import torch

    return torch.cuda.is_available()


#: what a missing kernel file's error says to do
KERNEL_FILE_HINT = (
    "give an earlier triton_additive.py, e.g. from "
    "`git show <commit>:attnbench/attention/kernels/triton_additive.py > FILE`"
)


def load_kernel_file(path: str) -> ModuleType:
    """An earlier copy of a kernel module (e.g. `git show <commit>:...triton_additive.py`),
    loaded beside the current one under its own name, so two versions can be compared."""
    spec = importlib.util.spec_from_file_location(f"attnbench_kernel_file_{abs(hash(path))}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python module file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
