"""Atomic, checksum-verified downloads with retries (only used without a local copy)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.request
from pathlib import Path

from attnbench.errors import UserError

_TIMEOUT_S = 60.0
_CHUNK = 1 << 16


class _HashMismatch(Exception):
    pass


def _fetch_once(url: str, dest: Path, sha256: str, timeout: float) -> None:
    """Stream `url` to a temp file beside `dest`, check the hash, then rename into place.

    The temp file lives in the destination folder so `os.replace` is atomic: readers never
    see a half-written file, even if the process is killed mid-download.
    """
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != sha256:
            raise _HashMismatch(f"sha256 {h.hexdigest()} does not match expected {sha256}")
        os.replace(tmp_name, dest)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def download_file(
    url: str,
    dest: str | Path,
    sha256: str,
    retries: int = 3,
    backoff_s: float = 1.0,
    timeout: float = _TIMEOUT_S,
) -> Path:
    """Download `url` to `dest` unless it is already there; return `dest`.

    Tries `retries` times, sleeping `backoff_s * 2**attempt` between tries, because
    raw.githubusercontent.com occasionally drops connections. An existing `dest` is trusted
    here; callers verify it with `checksums.verify_file`.
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    reason = "no attempt made"
    for attempt in range(max(1, retries)):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            _fetch_once(url, dest, sha256, timeout)
            return dest
        except (OSError, _HashMismatch) as e:  # URLError and timeouts are OSErrors
            reason = str(e).replace("\n", " ")
    raise UserError(f"could not download {url}: {reason}; set ATTNBENCH_DATA_DIR to a local copy")
