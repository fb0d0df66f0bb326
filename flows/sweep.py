"""Flow `sweep`: the attention-dimension sweep of Britz et al. (2017), Table 6.

variant x attention dimension x seed, one fixed configuration and no tuning; each cell is an
MLflow child run (tagged `attn_dim`) of one pipeline run, then paired tests and the report.
A rerun resumes: finished cells' checkpoints are reused, interrupted ones continue.

`parallel=N` trains N cells at once in worker processes (Prefect's ProcessPoolTaskRunner):
an RNN of this size leaves a GPU mostly idle, and on CPU the cores are split between workers.
Each worker still logs to the same MLflow parent run, so the report does not change.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from prefect import flow, task
from prefect.futures import as_completed
from prefect.task_runners import ProcessPoolTaskRunner

from attnbench.errors import UserError
from flows._common import (
    COMPUTE_SECONDS,
    DEFAULT_WORKDIR,
    as_config,
    publish,
    resolve_config,
    run_tags,
)


@task(retries=0)  # resumes from its checkpoint when rerun; no blind retries of training
def train_cell(
    config: dict[str, Any],
    variant: str,
    attn_dim: int,
    seed: int,
    workdir: str,
    parent_run_id: str | None,
) -> dict[str, Any]:
    from pathlib import Path

    from attnbench.pipeline import train_sweep_cell
    from attnbench.sweep import SweepCell

    cell = SweepCell(variant, attn_dim, seed)
    return train_sweep_cell(as_config(config), cell, Path(workdir), parent_run_id, run_tags())


def _share_cores(workers: int) -> None:
    """Each worker process gets an equal share of the CPU cores, so N workers do not
    oversubscribe the machine with N x cores threads."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@task
def paired_tests(
    config: dict[str, Any],
    run_dirs: dict[str, dict[int, str]],
    workdir: str,
    parent_run_id: str | None,
) -> dict[str, Any]:
    from pathlib import Path

    from attnbench.pipeline import sweep_tests

    dirs = {name: {seed: Path(p) for seed, p in seeds.items()} for name, seeds in run_dirs.items()}
    return sweep_tests(as_config(config), dirs, Path(workdir), parent_run_id)


@task
def write_report(config: dict[str, Any], workdir: str, reports_dir: str, parent_run_id: str) -> str:
    from pathlib import Path

    from attnbench.pipeline import report

    return str(report(as_config(config), Path(workdir), Path(reports_dir), parent_run_id))


@flow(name="sweep", log_prints=True)
def sweep_flow(
    preset: str | None = "britz-sweep",
    config: str | None = None,
    overrides: list[str] | None = None,
    workdir: str = DEFAULT_WORKDIR,
    reports_dir: str = "reports",
    parallel: int = 1,
) -> dict[str, Any]:
    """Train every (variant, attention dimension, seed) cell, test the claims, write the report.

    `parallel` cells train at once, each in its own worker process.
    """
    from pathlib import Path

    from attnbench.pipeline import finish_pipeline_run, start_pipeline_run
    from attnbench.sweep import sweep_cells

    if parallel < 1:
        raise UserError(f"parallel must be at least 1, got {parallel}")
    tree = resolve_config(preset, config, overrides)
    cells = sweep_cells(as_config(tree))
    COMPUTE_SECONDS["sweep"] = 0.0
    parent = start_pipeline_run(tree, Path(workdir), {**run_tags(), "sweep": "attn_dim"})
    rows: list[tuple[Any, ...]] = []
    run_dirs: dict[str, dict[int, str]] = {}
    tic = time.perf_counter()
    try:
        for i, (cell, out) in enumerate(_train_cells(tree, cells, workdir, parent, parallel), 1):
            print(f"sweep cell {i}/{len(cells)} done: {cell.system} seed {cell.seed}")
            COMPUTE_SECONDS["sweep"] += out["compute_seconds"]
            run_dirs.setdefault(cell.system, {})[cell.seed] = out["run_dir"]
            for split, s in out["scores"].items():
                rows.append((cell.variant, cell.attn_dim, cell.seed, split, f"{s['bleu']:.2f}"))
        paired_tests(tree, run_dirs, workdir, parent)
        path = write_report(tree, workdir, reports_dir, parent)
    except BaseException as exc:
        finish_pipeline_run(tree, Path(workdir), parent, error=exc)
        raise
    timing = [{"step": "sweep", "wall_s": time.perf_counter() - tic,
               "compute_s": COMPUTE_SECONDS["sweep"], "parallel": parallel}]  # fmt: skip
    finish_pipeline_run(tree, Path(workdir), parent, report=Path(path), timing=timing)
    lines = ["| variant | attn_dim | seed | split | BLEU |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in sorted(rows)]
    publish("\n".join(lines), "sweep-scores", "Test BLEU per sweep cell")
    return {"parent_run_id": parent, "report": path, "cells": len(cells)}


def _train_cells(
    tree: dict[str, Any], cells: list, workdir: str, parent: str, parallel: int
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(cell, train_cell output) as each cell finishes; in order when `parallel` is 1.

    With workers, every submitted cell runs to its end even when another fails (no finished
    work is thrown away: a rerun resumes), then the first failure is raised.
    """
    if parallel == 1:
        for cell in cells:
            print(f"sweep cell: {cell.system} seed {cell.seed}")
            yield cell, train_cell(tree, cell.variant, cell.attn_dim, cell.seed, workdir, parent)
        return
    workers = min(parallel, len(cells))
    runner = ProcessPoolTaskRunner(
        max_workers=workers, initializer=_share_cores, initargs=(workers,)
    )
    with runner:
        futures = {
            runner.submit(train_cell, {"config": tree, "variant": cell.variant,
                                       "attn_dim": cell.attn_dim, "seed": cell.seed,
                                       "workdir": workdir, "parent_run_id": parent}): cell
            for cell in cells
        }  # fmt: skip
        print(f"sweep: {len(cells)} cells on {workers} worker processes")
        failures = []
        for future in as_completed(list(futures)):
            cell = futures[future]
            try:
                out = future.result()
            except Exception as exc:
                failures.append(exc)
                print(f"sweep cell failed: {cell.system} seed {cell.seed}: {exc}")
                continue
            yield cell, out
        if failures:
            raise failures[0]


if __name__ == "__main__":
    from flows.cli import flow_main

    flow_main(sweep_flow)
