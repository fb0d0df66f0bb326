"""`flows._common.run_in_workers`: how the sweep and train flows run models in parallel."""

from __future__ import annotations

import os

import pytest
from prefect import flow, task

from attnbench.errors import UserError
from flows._common import run_in_workers


@task
def square_in_a_worker(x: int) -> tuple[int, int]:
    """x squared, and the process that computed it; 3 fails, as a crashed training would."""
    if x == 3:
        raise ValueError("cell 3 failed")
    return x * x, os.getpid()


@flow
def collect(xs: list[int], parallel: int) -> dict:
    results, error = {}, None

    def collect(index: int, out: tuple[int, int]) -> None:
        results[xs[index]] = out

    try:
        run_in_workers(square_in_a_worker, [{"x": x} for x in xs], parallel, collect)
    except ValueError as exc:
        error = str(exc)
    return {"results": results, "error": error, "flow_pid": os.getpid()}


@pytest.mark.slow
def test_workers_run_every_call_in_other_processes_and_raise_the_failure_last(prefect_harness):
    out = collect([1, 2, 3, 4, 5], parallel=2)
    assert {x: value for x, (value, _) in out["results"].items()} == {1: 1, 2: 4, 4: 16, 5: 25}
    assert out["error"] == "cell 3 failed"  # raised after the others finished, not before
    pids = {pid for _, pid in out["results"].values()}
    assert out["flow_pid"] not in pids and 1 <= len(pids) <= 2


def test_one_worker_runs_in_order_in_this_process(prefect_harness):
    out = collect([2, 1], parallel=1)
    assert list(out["results"]) == [2, 1]
    assert {pid for _, pid in out["results"].values()} == {out["flow_pid"]}


def test_a_worker_count_below_one_is_refused(prefect_harness):
    with pytest.raises(UserError, match="parallel must be at least 1"):
        collect([1], parallel=0)


def test_the_timing_table_gives_no_overhead_share_for_concurrent_compute():
    from flows.benchmark import timing_table

    rows = [
        {"step": "prepare", "wall_s": 1.0, "compute_s": None, "overhead_share": None},
        {"step": "tune", "wall_s": 100.0, "compute_s": 90.0, "overhead_share": 0.1},
        {"step": "train", "wall_s": 300.0, "compute_s": 550.0, "overhead_share": None},
    ]
    table = timing_table(rows)
    assert "| train | 300.0 | 550.0 | n/a |" in table
    assert "| total | 401.0 | 640.0 | 10% (steps with a share) |" in table  # tune's 10% only
