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


DIES_HOLDING_THE_LOCK = """
import multiprocessing, os, sys, types

from flows._common import _do_not_wait_for_worker_messages


def die_holding(lock):  # a worker killed while sending a log message
    lock.acquire()
    os._exit(1)


if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()  # the pool's log queue: one write lock for every writer
    worker = context.Process(target=die_holding, args=(queue._wlock,))
    worker.start()
    worker.join()
    if sys.argv[1] == "skip-the-wait":
        _do_not_wait_for_worker_messages(types.SimpleNamespace(_subprocess_message_queue=queue))
    queue.put_nowait("stop")  # what Prefect's shutdown writes: it can never get the lock
    print("exiting", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("skip", [True, False])
def test_a_worker_dead_with_the_queue_lock_does_not_hang_the_exit(tmp_path, skip):
    """Reproduces the hang seen once in CI after SIGTERM with 2 workers, and its fix; without
    the fix the process must still be waiting, which shows the test sees the hazard."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "dies_holding_the_lock.py"
    script.write_text(DIES_HOLDING_THE_LOCK)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    mode = "skip-the-wait" if skip else "wait"
    proc = subprocess.Popen([sys.executable, str(script), mode], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        rc = proc.wait(timeout=30 if skip else 8)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        proc.kill()
        out = proc.communicate()[0]
    assert "exiting" in out  # it got to the end of its work either way
    assert rc == (0 if skip else None)


SWALLOWS_ITS_SIGTERM = """
import os, signal, sys, time
import flows._common as common
from attnbench.tracking import Tracker

common.WORKER_UNWIND_S = 0.5
common.prepare_worker(1)
tracker = Tracker.local(sys.argv[1], "e")
tracker.end_run(tracker.start_run("finished before"))
with tracker.run("cell") as run_id:
    signalled = False
    while True:  # a library block that swallows SystemExit: the model trains on
        try:
            if not signalled:
                signalled = True
                os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        except BaseException:
            pass
"""


@pytest.mark.slow
def test_a_worker_whose_code_swallowed_sigterm_still_exits_and_fails_its_run(tmp_path):
    """What left a sweep cell RUNNING in MLflow once in CI: the worker's SystemExit never
    reached the training code, and the worker ended WORKER_UNWIND_S later mid-training."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from attnbench.tracking import Tracker

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", SWALLOWS_ITS_SIGTERM, str(tmp_path)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-2000:]
    runs = Tracker.local(tmp_path, "e").search_runs("")
    status = dict(zip(runs["tags.mlflow.runName"], runs["status"], strict=True))
    assert status == {"finished before": "FINISHED", "cell": "FAILED"}
    error = runs[runs["tags.mlflow.runName"] == "cell"]["tags.error"].iloc[0]
    assert error.startswith("terminated by signal 15: the worker did not unwind")
