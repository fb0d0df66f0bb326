"""The training-step shape the measurement scripts here share: by default the benchmark's
80 / 20 key-projection cell (B=16, S=80, T=20, hidden = A = 512, vocab 8000), where computing
the key projection once saves least; the test suite runs the scripts on a tiny one."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class StepShape:
    batch: int = 16
    src_len: int = 80
    tgt_len: int = 20
    hidden: int = 512
    vocab: int = 8000

    def __str__(self) -> str:
        return (f"B={self.batch}, S={self.src_len}, T={self.tgt_len}, hidden=A={self.hidden}, "
                f"vocab={self.vocab}")  # fmt: skip


def positive(text: str) -> int:
    """argparse type: a positive int (otherwise a usage line and exit code 2)."""
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def add_shape_arguments(parser: argparse.ArgumentParser) -> None:
    default = StepShape()
    group = parser.add_argument_group("training-step shape (default: the 80 / 20 cell)")
    for name in ("batch", "src_len", "tgt_len", "hidden", "vocab"):
        group.add_argument(f"--{name.replace('_', '-')}", type=positive,
                           default=getattr(default, name))  # fmt: skip


def shape_from(args: argparse.Namespace) -> StepShape:
    return StepShape(args.batch, args.src_len, args.tgt_len, args.hidden, args.vocab)
