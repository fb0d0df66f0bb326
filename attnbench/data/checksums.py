"""SHA-256 verification of data files, done once per file per process.

Hashing the 600 KB Multi30k train files on every load is cheap but pointless; the set below
remembers what was already checked in this process.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from attnbench.errors import UserError

_VERIFIED: set[Path] = set()
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (streamed, so large files do not fill memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, expected: str) -> None:
    """Raise UserError if `path` does not hash to `expected`; remember successes."""
    key = path.resolve()
    if key in _VERIFIED:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise UserError(
            f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}; "
            "corrupt or different version; delete it to re-download"
        )
    _VERIFIED.add(key)
