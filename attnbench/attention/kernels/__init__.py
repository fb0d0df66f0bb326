"""Specialised attention kernels: fast paths that compute what `attnbench.attention` defines.

Nothing here is imported eagerly: `triton_additive` imports triton (an optional extra) and
must be imported after TRITON_INTERPRET is decided, so callers import it when they need it.
"""

from __future__ import annotations

import os


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
