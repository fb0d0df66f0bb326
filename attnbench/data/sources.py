"""Find a data set file: a local copy when configured, else the download cache.

Shared by Multi30k and FLORES so both follow the same rules:
`data_dir` argument, then `ATTNBENCH_DATA_DIR`, then download into the cache. A local folder
may be the data set's own folder or its parent (holding e.g. `multi30k/`).
"""

from __future__ import annotations

import os
from pathlib import Path

from attnbench.data.checksums import verify_file
from attnbench.data.download import download_file
from attnbench.errors import UserError

DATA_DIR_ENV = "ATTNBENCH_DATA_DIR"
CACHE_DIR_ENV = "ATTNBENCH_CACHE_DIR"


def default_cache_root() -> Path:
    """`$ATTNBENCH_CACHE_DIR`, or `~/.cache/attnbench`."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "attnbench"


def _local_dir(subdir: str, data_dir: Path | None) -> tuple[Path, str] | None:
    """The configured local folder and where the setting came from, or None to download."""
    if data_dir is not None:
        base, origin = Path(data_dir).expanduser(), "data_dir"
    elif os.environ.get(DATA_DIR_ENV):
        base, origin = Path(os.environ[DATA_DIR_ENV]).expanduser(), DATA_DIR_ENV
    else:
        return None
    hint = (
        f"point {origin} at the shared data (e.g. ATTNBENCH_DATA_DIR=../shared/data) "
        f"or remove the setting to download"
    )
    if not base.is_dir():
        raise UserError(f"data folder not found: {base} (from {origin}); {hint}")
    return (base / subdir if (base / subdir).is_dir() else base), hint


def fetch_file(
    subdir: str,
    fname: str,
    url: str,
    sha256: str,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Path to a verified copy of `fname` from the local folder or the download cache."""
    local = _local_dir(subdir, data_dir)
    if local is not None:
        folder, hint = local
        path = folder / fname
        if not path.is_file():
            raise UserError(f"data file not found: {path}; {hint}")
    else:
        folder = Path(cache_dir).expanduser() if cache_dir else default_cache_root() / subdir
        path = download_file(url, folder / fname, sha256)
    verify_file(path, sha256)
    return path
