"""Synthetic copy / reverse / sort tasks: attention must align, with no linguistic noise."""

from __future__ import annotations

import random

from attnbench.data.corpus import ParallelCorpus
from attnbench.errors import UserError

SYNTHETIC_TASKS = ("copy", "reverse", "sort")


def _validate(task: str, n: int, min_len: int, max_len: int, vocab_size: int) -> None:
    if task not in SYNTHETIC_TASKS:
        raise UserError(
            f"unknown synthetic task {task!r}; choose one of {', '.join(SYNTHETIC_TASKS)}"
        )
    if n <= 0:
        raise UserError(f"synthetic n must be positive, got {n}; set n >= 1")
    if min_len < 1:
        raise UserError(f"synthetic min_len must be >= 1, got {min_len}; set min_len >= 1")
    if max_len < min_len:
        raise UserError(
            f"synthetic max_len ({max_len}) is below min_len ({min_len}); set max_len >= min_len"
        )
    if vocab_size < 2:
        raise UserError(f"synthetic vocab_size must be >= 2, got {vocab_size}; use 2 or more")


def make_synthetic(
    task: str,
    n: int,
    min_len: int,
    max_len: int,
    vocab_size: int,
    seed: int,
    name: str | None = None,
) -> ParallelCorpus:
    """`n` pairs of space-joined symbols `t0..t{vocab_size-1}`, deterministic in `seed`.

    The source length is uniform in [min_len, max_len]; the target is the source copied,
    reversed, or sorted by symbol index. A private `random.Random` keeps global state alone.
    """
    _validate(task, n, min_len, max_len, vocab_size)
    rng = random.Random(seed)
    src: list[str] = []
    tgt: list[str] = []
    for _ in range(n):
        ids = [rng.randrange(vocab_size) for _ in range(rng.randint(min_len, max_len))]
        if task == "reverse":
            out = ids[::-1]
        elif task == "sort":
            out = sorted(ids)
        else:
            out = ids
        src.append(" ".join(f"t{i}" for i in ids))
        tgt.append(" ".join(f"t{i}" for i in out))
    default = f"synthetic/{task}/n{n}-len{min_len}-{max_len}-v{vocab_size}-s{seed}"
    return ParallelCorpus(name or default, src, tgt)
