"""What every flow shares: telemetry defaults, config resolution, run tags."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attnbench.settings import telemetry_off_by_default

telemetry_off_by_default()

DEFAULT_WORKDIR = "attnbench-runs"
#: seconds to wait for Prefect's ephemeral server to start. Its own default, 20 s, was too
#: short for the first start after a fresh install on a 2-core Zen 3 VM: `make run` failed
#: there on a fresh clone (2026-11-27). A value the user sets in the environment wins
EPHEMERAL_STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
EPHEMERAL_STARTUP_TIMEOUT_S = 120


@contextmanager
def process_settings() -> Iterator[None]:
    """Prefect's settings for flows run from this process (`attnbench <command>`,
    `python -m flows.<name>`).

    Without PREFECT_API_URL the flows run on Prefect's ephemeral server, which stops with this
    process, so nothing could ever read a flow run's heartbeats (a server can use them to mark
    crashed runs); yet each flow run's heartbeat thread held up its end by ~1 s (it sleeps in
    1 s steps and is joined), seven flow runs in `attnbench run`. There they are off; against
    a server they stay on. The ephemeral server also gets `EPHEMERAL_STARTUP_TIMEOUT_S` to
    start unless the user set its timeout."""
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        get_current_settings,
        temporary_settings,
    )

    if get_current_settings().api.url:
        yield
        return
    updates: dict[Any, Any] = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    if EPHEMERAL_STARTUP_TIMEOUT_ENV not in os.environ:
        updates[PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS] = EPHEMERAL_STARTUP_TIMEOUT_S
    with temporary_settings(updates=updates):
        yield


def resolve_config(
    preset: str | None = None, config: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Preset/file/overrides -> a validated, JSON-safe config dict (what flows pass around)."""
    from attnbench.config import config_to_dict, load_config
    from attnbench.pipeline import check_benchmark

    cfg = load_config(Path(config) if config else None, preset, overrides)
    check_benchmark(cfg)
    return config_to_dict(cfg)


def as_config(tree: dict[str, Any]):
    from attnbench.config import validate_config

    return validate_config(tree)


def run_tags() -> dict[str, Any]:
    """Tags every MLflow run of this flow run carries (git commit, Prefect flow-run id)."""
    from prefect.runtime import flow_run

    from attnbench.pipeline import git_commit

    return {"git_commit": git_commit(), "prefect_flow_run_id": flow_run.get_id()}


#: seconds spent inside library work (training, decoding, scoring) per step, in this process:
#: the parent flow compares it with each step's wall time to measure orchestration overhead
COMPUTE_SECONDS: dict[str, float] = defaultdict(float)


@contextmanager
def compute_time(step: str) -> Iterator[None]:
    tic = time.perf_counter()
    try:
        yield
    finally:
        COMPUTE_SECONDS[step] += time.perf_counter() - tic


def publish(markdown: str, key: str, description: str) -> None:
    """A flow's headline numbers: a Prefect Markdown artifact, and the same text in its log."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown, key=key, description=description)
    print(markdown)


def run_in_workers(
    task: Any,
    calls: list[dict[str, Any]],
    parallel: int,
    on_result: Callable[[int, Any], None],
) -> None:
    """Run `task(**call)` for every call; `on_result(index into calls, result)` as each finishes.

    `parallel` 1: in order, in this process. More: that many worker processes (Prefect's
    ProcessPoolTaskRunner) with the CPU cores shared out between them; every call runs to its
    end even when another fails (finished work is kept, and a rerun resumes the rest), then
    the first failure is raised. Ctrl+C or SIGTERM stops the workers at once: each marks its
    MLflow run failed, and a rerun resumes from the checkpoints. (A callback rather than a
    generator, so that an interrupt anywhere in the loop still reaches the cleanup here.)
    """
    check_parallel(parallel)
    if parallel == 1:
        for index, call in enumerate(calls):
            on_result(index, task(**call))
        return
    from prefect.futures import as_completed
    from prefect.task_runners import ProcessPoolTaskRunner

    workers = max(1, min(parallel, len(calls)))
    runner = ProcessPoolTaskRunner(
        max_workers=workers, initializer=prepare_worker, initargs=(workers,)
    )
    failures: list[BaseException] = []
    with _workers_report_here(), runner:
        try:
            futures = {runner.submit(task, call): i for i, call in enumerate(calls)}
            print(f"{len(calls)} {task.name} runs on {workers} worker processes")
            for future in as_completed(list(futures)):
                try:
                    result = future.result()
                except Exception as exc:
                    failures.append(exc)
                    print(f"{task.name} {futures[future] + 1}/{len(calls)} failed: {exc}")
                    continue
                on_result(futures[future], result)
        except BaseException:  # Ctrl+C, SIGTERM: stop the workers before the pool waits on them
            _stop_workers(grace_s=WORKER_UNWIND_S + CLOSE_RUNS_S + 2.0)
            _do_not_wait_for_worker_messages(runner)
            raise
    if failures:
        raise failures[0]


@contextmanager
def _workers_report_here() -> Iterator[None]:
    """Point the workers at this process's Prefect API while they run.

    In Prefect's ephemeral mode (no PREFECT_API_URL) every spawned worker would otherwise start
    a temporary server of its own on the same database (measured: one per worker, ~5 s each).
    """
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        yield
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        url = str(client.api_url)
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


def _stop_workers(grace_s: float) -> None:
    """SIGTERM to this process's worker processes (its multiprocessing children): the models
    they train unwind (MLflow runs end FAILED) and they exit (`prepare_worker`). Whatever is
    still alive after `grace_s` is killed."""
    import multiprocessing

    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    deadline = time.monotonic() + grace_s
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()


def _do_not_wait_for_worker_messages(runner: object) -> None:
    """Let this process exit although a stopped worker may hold the log queue's write lock.

    Workers send their logs to the parent through a multiprocessing queue guarded by one
    lock shared by all writers; a worker that dies mid-send keeps it held for good. Prefect's
    shutdown then cannot write its stop message to the queue, and at exit Python would wait
    forever for that write (reproduced: about 1 SIGTERM in 4 with 2 workers). The workers are
    gone, so nothing is left to forward: skip the wait. (`_subprocess_message_queue` is the
    ProcessPoolTaskRunner's queue in Prefect 3.9; if it moves, this does nothing.)
    """
    queue = getattr(runner, "_subprocess_message_queue", None)
    if queue is not None and hasattr(queue, "cancel_join_thread"):
        queue.cancel_join_thread()


def check_parallel(parallel: int) -> None:
    """Before any work starts: a worker count below 1 is one clear line."""
    from attnbench.errors import UserError

    if parallel < 1:
        raise UserError(f"parallel must be at least 1 (worker processes), got {parallel}")


#: seconds a worker has, after SIGTERM, to unwind the model it is training before it exits
WORKER_UNWIND_S = 5.0


def prepare_worker(workers: int) -> None:
    """Set up a worker process: an equal share of the cores for torch (N workers must not
    oversubscribe the machine with N x cores threads), and SIGTERM as SystemExit, so the model
    it is training unwinds (its MLflow run is marked failed) before the process ends.

    Only the first SIGTERM raises: a second one must not cut the unwinding short. The process
    then ends WORKER_UNWIND_S later whatever it is doing (idle on the pool's queue, it would
    otherwise wait there for work that never comes).
    """
    import signal
    import sys
    import threading

    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))

    def _exit(signum: int, frame: object) -> None:
        if _TERMINATING:
            return
        _TERMINATING.append(signum)
        threading.Timer(WORKER_UNWIND_S, _exit_now, args=(signum,)).start()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


#: seconds the last resort of `_exit_now` may spend closing MLflow runs
CLOSE_RUNS_S = 3.0


def _exit_now(signum: int) -> None:
    """End the worker WORKER_UNWIND_S after SIGTERM, closing the MLflow runs it left open.

    The SystemExit of the first SIGTERM does not always reach the training code: raised
    while a library runs a block that swallows it, it is lost and the model trains on
    (seen once in CI: the sweep's cell then stayed RUNNING in MLflow). So the runs still
    open here are marked FAILED before the process ends, within CLOSE_RUNS_S.
    """
    import sys
    import threading

    tracking = sys.modules.get("attnbench.tracking")  # not imported: no run was started
    if tracking is not None:
        reason = (
            f"terminated by signal {signum}: the worker did not unwind within {WORKER_UNWIND_S:g} s"
        )
        closer = threading.Thread(target=tracking.fail_open_runs, args=(reason,), daemon=True)
        closer.start()
        closer.join(CLOSE_RUNS_S)
    os._exit(128 + signum)


#: set in a worker process once it got SIGTERM (see `prepare_worker`)
_TERMINATING: list[int] = []


def exit_if_terminating() -> None:
    """First line of every task `run_in_workers` runs: a worker told to stop takes no new
    call from its queue (the pool hands queued calls on) and leaves before doing any work."""
    if _TERMINATING:
        os._exit(128 + _TERMINATING[0])
