"""The one exception type for mistakes a user can fix.

The CLI turns a `UserError` into a single line on stderr and exit code 2; everything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from pathlib import Path


class UserError(Exception):
    """A problem with the user's input: say what was wrong, where, and how to fix it."""


def check_folder(path: Path, what: str) -> None:
    """Say in one line why a command could not write into the folder `path`, before it starts
    (a file in its place surfaced as a traceback after minutes of work). Nothing is created:
    a command stopped by a later check leaves nothing behind."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder; pass a folder (or move the file)")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {path}: {existing} is a file, not a folder; pass a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {existing} is not writable; pass a writable folder")
