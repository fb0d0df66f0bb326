"""Parallel corpora in memory and readers for aligned text files.

Readers decode the whole file strictly as UTF-8 so a bad byte is reported with its line
number instead of surfacing later as a garbled token.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

from attnbench.errors import UserError


@dataclass(frozen=True)
class ParallelCorpus:
    """Aligned sentence pairs: `src[i]` translates to `tgt[i]`."""

    name: str
    src: list[str]
    tgt: list[str]

    def __post_init__(self) -> None:
        if len(self.src) != len(self.tgt):
            raise ValueError(f"src has {len(self.src)} sentences but tgt has {len(self.tgt)}")

    def __len__(self) -> int:
        return len(self.src)

    def head(self, n: int) -> ParallelCorpus:
        """First `n` pairs under the same name (for quick runs and smoke tests)."""
        return ParallelCorpus(self.name, self.src[:n], self.tgt[:n])


def _read_bytes(path: Path) -> bytes:
    """Raw (decompressed when the name ends in `.gz`) bytes of a file, or a UserError."""
    if not path.is_file():
        raise UserError(f"file not found: {path}; check the path")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise UserError(
            f"not a valid gzip file: {path} ({e}); re-download it or remove the .gz suffix"
        ) from e


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file (optionally gzipped), without the line terminators.

    Splits on `\\n` only (not `str.splitlines`, which also splits on U+2028 and friends that
    may occur inside a sentence) and drops a trailing `\\r` so CRLF files read the same.
    """
    path = Path(path)
    data = _read_bytes(path)
    if not data:
        raise UserError(f"file is empty: {path}; expected one sentence per line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(
            f"not valid UTF-8: {path} line {line} ({e.reason}); re-encode the file as UTF-8"
        ) from e
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [s.removesuffix("\r") for s in lines]


def read_parallel(
    src_path: str | Path, tgt_path: str | Path, name: str | None = None
) -> ParallelCorpus:
    """Read two line-aligned files (plain or `.gz`) into a corpus."""
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise UserError(
            f"line counts differ: {src_path} has {len(src)} lines but {tgt_path} has "
            f"{len(tgt)}; the two files must be aligned line by line"
        )
    return ParallelCorpus(name or f"{src_path.name}-{tgt_path.name}", src, tgt)


def read_tsv(path: str | Path, name: str | None = None) -> ParallelCorpus:
    """Read `source<TAB>target` lines (plain or `.gz`) into a corpus."""
    path = Path(path)
    src: list[str] = []
    tgt: list[str] = []
    for i, line in enumerate(read_lines(path), start=1):
        parts = line.split("\t")
        if len(parts) != 2:
            raise UserError(
                f"bad line in {path} line {i}: expected exactly one tab, found "
                f"{len(parts) - 1}; write each pair as source<TAB>target"
            )
        src.append(parts[0])
        tgt.append(parts[1])
    return ParallelCorpus(name or path.stem, src, tgt)
