"""The one exception type for mistakes a user can fix.

The CLI turns a `UserError` into a single line on stderr and exit code 2; everything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem with the user's input: say what was wrong, where, and how to fix it."""


def check_folder(path: Path, what: str) -> None:
    """Create the folder a command will write into, or say in one line why it cannot be:
    otherwise a file in its place surfaced as a traceback after minutes of work."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder; pass a folder (or move the file)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"{what} {path}: cannot create the folder ({exc.strerror}); pass a writable folder"
        ) from exc
