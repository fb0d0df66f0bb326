"""Flow `benchmark`: prepare -> tune -> train (seeds) -> evaluate -> bench -> report.

One MLflow parent run per pipeline run; every trial and final seed is its child. Each step is
also a flow of its own (`python -m flows.tune`, `attnbench tune`, ...).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow

from flows._common import (
    COMPUTE_SECONDS,
    DEFAULT_WORKDIR,
    check_parallel,
    publish,
    resolve_config,
    run_tags,
)
from flows.bench import bench_flow
from flows.evaluate import evaluate_flow
from flows.prepare import prepare_flow
from flows.report import report_flow
from flows.train import train_flow
from flows.tune import tune_flow


@flow(name="benchmark", log_prints=True)
def benchmark_flow(
    preset: str | None = "quick",
    config: str | None = None,
    overrides: list[str] | None = None,
    workdir: str = DEFAULT_WORKDIR,
    reports_dir: str = "reports",
    parallel: int = 1,
) -> dict[str, Any]:
    """The whole pipeline; `parallel` final models (variants x seeds) train at once."""
    from pathlib import Path

    from attnbench.pipeline import finish_pipeline_run, start_pipeline_run

    check_parallel(parallel)
    tree = resolve_config(preset, config, overrides)
    parent = start_pipeline_run(tree, Path(workdir), run_tags())
    COMPUTE_SECONDS.clear()
    timing: list[dict[str, Any]] = []

    def step(name: str, subflow: Any, **kwargs: Any) -> Any:
        tic = time.perf_counter()
        result = subflow(**kwargs)
        timing.append({"step": name, "wall_s": time.perf_counter() - tic})
        return result

    try:
        common = {"resolved": tree, "workdir": workdir, "parent_run_id": parent}
        sizes = step("prepare", prepare_flow, resolved=tree)
        best = step("tune", tune_flow, **common)
        runs = step("train", train_flow, best=best, parallel=parallel, **common)
        step("evaluate", evaluate_flow, runs=runs, **common)  # logs significance to MLflow
        step("bench", bench_flow, **common)
        report = step("report", report_flow, reports_dir=reports_dir, **common)
    except BaseException as exc:
        finish_pipeline_run(tree, Path(workdir), parent, error=exc)
        raise
    for row in timing:
        compute = COMPUTE_SECONDS.get(row["step"])
        row["compute_s"] = compute
        # with workers, compute is summed over processes that ran at the same time
        in_workers = row["step"] == "train" and parallel > 1
        row["overhead_share"] = (
            None if compute is None or in_workers else 1 - compute / row["wall_s"]
        )
    table = timing_table(timing)
    publish(table, "timing", "Wall time per step")
    finish_pipeline_run(tree, Path(workdir), parent, report=Path(report), timing=timing)
    return {
        "parent_run_id": parent,
        "report": report,
        "data": sizes,
        "best": best,
        "timing": timing,
    }


def timing_table(timing: list[dict[str, Any]]) -> str:
    """Markdown: wall time per step, time in library compute, and the rest (orchestration,
    tracking, tuning bookkeeping) as a share of the step."""
    lines = ["| step | wall (s) | compute (s) | overhead share |", "|---|---|---|---|"]
    for r in timing:
        compute = "n/a" if r["compute_s"] is None else f"{r['compute_s']:.1f}"
        share = "n/a" if r["overhead_share"] is None else f"{100 * r['overhead_share']:.0f}%"
        lines.append(f"| {r['step']} | {r['wall_s']:.1f} | {compute} | {share} |")
    wall = sum(r["wall_s"] for r in timing)
    compute = sum(r["compute_s"] for r in timing if r["compute_s"] is not None)
    # the share only over steps that have one: with workers, compute runs concurrently
    shared = [r for r in timing if r["overhead_share"] is not None]
    shared_wall = sum(r["wall_s"] for r in shared)
    share = "n/a"
    if shared_wall:
        share = f"{100 * (1 - sum(r['compute_s'] for r in shared) / shared_wall):.0f}%"
        if len(shared) < len(timing):
            share += " (steps with a share)"
    lines.append(f"| total | {wall:.1f} | {compute:.1f} | {share} |")
    return "\n".join(lines)


if __name__ == "__main__":
    from flows.cli import flow_main

    flow_main(benchmark_flow)
