"""Flow `sweep`: the attention-dimension sweep of Britz et al. (2017), Table 6.

variant x attention dimension x seed, one fixed configuration and no tuning; each cell is an
MLflow child run (tagged `attn_dim`) of one pipeline run, then paired tests and the report.
A rerun resumes: finished cells' checkpoints are reused, interrupted ones continue.

`parallel=N` trains N cells at once in worker processes (Prefect's ProcessPoolTaskRunner):
an RNN of this size leaves a GPU mostly idle, and on CPU the cores are split between workers.
Each worker still logs to the same MLflow parent run, so the report does not change.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, task

from flows._common import (
    COMPUTE_SECONDS,
    DEFAULT_WORKDIR,
    as_config,
    check_parallel,
    exit_if_terminating,
    publish,
    resolve_config,
    run_in_workers,
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

    exit_if_terminating()
    cell = SweepCell(variant, attn_dim, seed)
    print(f"training sweep cell {cell.system} seed {seed}")
    return train_sweep_cell(as_config(config), cell, Path(workdir), parent_run_id, run_tags())


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

    check_parallel(parallel)
    tree = resolve_config(preset, config, overrides)
    cells = sweep_cells(as_config(tree))
    COMPUTE_SECONDS["sweep"] = 0.0
    parent = start_pipeline_run(tree, Path(workdir), {**run_tags(), "sweep": "attn_dim"})
    rows: list[tuple[Any, ...]] = []
    run_dirs: dict[str, dict[int, str]] = {}
    tic = time.perf_counter()
    try:
        calls = [
            {"config": tree, "variant": cell.variant, "attn_dim": cell.attn_dim,
             "seed": cell.seed, "workdir": workdir, "parent_run_id": parent}
            for cell in cells
        ]  # fmt: skip

        def collect(index: int, out: dict[str, Any]) -> None:
            cell = cells[index]
            done = sum(len(seeds) for seeds in run_dirs.values()) + 1
            print(f"sweep cell {done}/{len(cells)} done: {cell.system} seed {cell.seed}")
            COMPUTE_SECONDS["sweep"] += out["compute_seconds"]
            run_dirs.setdefault(cell.system, {})[cell.seed] = out["run_dir"]
            for split, s in out["scores"].items():
                rows.append((cell.variant, cell.attn_dim, cell.seed, split, f"{s['bleu']:.2f}"))

        run_in_workers(train_cell, calls, parallel, collect)
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


if __name__ == "__main__":
    from flows.cli import flow_main

    flow_main(sweep_flow)
