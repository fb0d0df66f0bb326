"""What every flow shares: telemetry defaults, config resolution, run tags."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}
for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)

DEFAULT_WORKDIR = "attnbench-runs"


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
    task: Any, calls: list[dict[str, Any]], parallel: int
) -> Iterator[tuple[int, Any]]:
    """Run `task(**call)` for every call; yields (index into `calls`, result) as each finishes.

    `parallel` 1: in order, in this process (Ctrl+C stops at once). More: that many worker
    processes (Prefect's ProcessPoolTaskRunner) with the CPU cores shared out between them;
    every call runs to its end even when another fails (finished work is kept, and a rerun
    resumes the rest), then the first failure is raised.
    """
    check_parallel(parallel)
    if parallel == 1:
        for index, call in enumerate(calls):
            yield index, task(**call)
        return
    from prefect.futures import as_completed
    from prefect.task_runners import ProcessPoolTaskRunner

    workers = max(1, min(parallel, len(calls)))
    runner = ProcessPoolTaskRunner(
        max_workers=workers, initializer=share_cores, initargs=(workers,)
    )
    with runner:
        futures = {runner.submit(task, call): index for index, call in enumerate(calls)}
        print(f"{len(calls)} {task.name} runs on {workers} worker processes")
        failures: list[BaseException] = []
        for future in as_completed(list(futures)):
            try:
                result = future.result()
            except Exception as exc:
                failures.append(exc)
                print(f"{task.name} {futures[future] + 1}/{len(calls)} failed: {exc}")
                continue
            yield futures[future], result
        if failures:
            raise failures[0]


def check_parallel(parallel: int) -> None:
    """Before any work starts: a worker count below 1 is one clear line."""
    from attnbench.errors import UserError

    if parallel < 1:
        raise UserError(f"parallel must be at least 1 (worker processes), got {parallel}")


def share_cores(workers: int) -> None:
    """A worker process's torch threads: an equal share of the cores, so N workers do not
    oversubscribe the machine with N x cores threads."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
