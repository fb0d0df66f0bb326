"""Synthetic copy / reverse / sort tasks."""

from __future__ import annotations

import random

import pytest

from attnbench.data import SYNTHETIC_TASKS, make_synthetic
from attnbench.errors import UserError


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
def test_tasks_correct(task: str) -> None:
    c = make_synthetic(task, n=200, min_len=3, max_len=9, vocab_size=12, seed=7)
    assert len(c) == 200
    assert task in c.name
    lengths = set()
    for s, t in zip(c.src, c.tgt, strict=True):
        toks = s.split(" ")
        lengths.add(len(toks))
        assert all(tok.startswith("t") and 0 <= int(tok[1:]) < 12 for tok in toks)
        expected = {
            "copy": toks,
            "reverse": toks[::-1],
            "sort": sorted(toks, key=lambda x: int(x[1:])),
        }[task]
        assert t.split(" ") == expected
    assert lengths == set(range(3, 10))


def test_deterministic_and_no_global_state() -> None:
    random.seed(1)
    a = make_synthetic("sort", 50, 1, 20, 100, seed=3)
    state = random.getstate()
    b = make_synthetic("sort", 50, 1, 20, 100, seed=3)
    assert random.getstate() == state
    assert a == b
    assert make_synthetic("sort", 50, 1, 20, 100, seed=4) != a
    assert make_synthetic("copy", 1, 2, 2, 2, seed=0, name="x").name == "x"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"task": "add"}, "copy, reverse, sort"),
        ({"n": 0}, "n must"),
        ({"min_len": 0}, "min_len"),
        ({"min_len": 5, "max_len": 4}, "max_len"),
        ({"vocab_size": 1}, "vocab_size"),
    ],
)
def test_validation(kwargs: dict, needle: str) -> None:
    args = {"task": "copy", "n": 5, "min_len": 1, "max_len": 5, "vocab_size": 10, "seed": 0}
    with pytest.raises(UserError, match=needle) as e:
        make_synthetic(**{**args, **kwargs})
    assert "\n" not in str(e.value)
