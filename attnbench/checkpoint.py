"""Atomic, pickle-free checkpoints.

Written to a temporary file and renamed, so a crash mid-write leaves the previous checkpoint
intact; read with `weights_only=True`, so a checkpoint cannot run code.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from attnbench.errors import UserError


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load tensors and plain values only; anything else is refused with one clear line."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a folder; pass a checkpoint file in it (best.pt)")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass the path of a checkpoint file")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise UserError(
            f"checkpoint {path} is corrupt or not a torch checkpoint; delete it, or resume "
            "from an earlier one"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise UserError(
            f"checkpoint {path} holds objects other than tensors and plain values "
            f"({first[:120]}); refusing to load it. Use a checkpoint written by attnbench"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UserError(
            f"checkpoint {path} is corrupt or not a torch checkpoint ({type(exc).__name__}); "
            "delete it, or resume from an earlier one"
        ) from exc
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"checkpoint {path} is not an attnbench checkpoint (no model state)")
    return state
