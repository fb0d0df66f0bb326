"""Flow `bench`: attention speed and memory per implementation as sequences grow.

Wraps the same runner as `python -m attnbench.bench` (attnbench.bench.runner) and adds MLflow
logging; the parent `benchmark` flow calls it with the config's benchmark settings.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from flows._common import (
    DEFAULT_WORKDIR,
    as_config,
    compute_time,
    publish,
    resolve_config,
    run_tags,
)


@task
def attention_benchmark(
    config: dict[str, Any], workdir: str, parent_run_id: str | None, device: str | None
) -> dict[str, Any]:
    from pathlib import Path

    from attnbench.pipeline import throughput_benchmark

    tags = run_tags()
    with compute_time("bench"):
        return throughput_benchmark(as_config(config), Path(workdir), parent_run_id, tags, device)


@flow(name="bench", log_prints=True)
def bench_flow(
    preset: str | None = "quick",
    config: str | None = None,
    overrides: list[str] | None = None,
    workdir: str = DEFAULT_WORKDIR,
    resolved: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Time every attention implementation per length (tidy rows to MLflow + parquet); the
    Markdown report (limits, LRA-style table, targets) becomes the flow's artifact."""
    tree = resolved or resolve_config(preset, config, overrides)
    result = attention_benchmark(tree, workdir, parent_run_id, device)
    publish(result["report"], "attention-benchmark", "Attention implementations by length")
    return result["rows"]


if __name__ == "__main__":
    from flows.cli import flow_main

    flow_main(bench_flow)
