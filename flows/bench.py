"""Flow `bench`: attention forward throughput per variant as sequences grow."""

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
def attention_throughput(
    config: dict[str, Any], workdir: str, parent_run_id: str | None
) -> list[dict[str, Any]]:
    from pathlib import Path

    from attnbench.pipeline import throughput_benchmark

    tags = run_tags()
    with compute_time("bench"):
        return throughput_benchmark(as_config(config), Path(workdir), parent_run_id, tags)


@flow(name="bench", log_prints=True)
def bench_flow(
    preset: str | None = "quick",
    config: str | None = None,
    overrides: list[str] | None = None,
    workdir: str = DEFAULT_WORKDIR,
    resolved: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
) -> list[dict[str, Any]]:
    """Time attention forward per variant as sequences grow (tidy rows to MLflow + parquet)."""
    tree = resolved or resolve_config(preset, config, overrides)
    rows = attention_throughput(tree, workdir, parent_run_id)
    lines = ["| variant | length | ms (median) | queries/s |", "|---|---|---|---|"]
    for r in rows:
        if r["status"] == "ok":
            lines.append(
                f"| {r['variant']} | {r['length']} | {r['seconds_median'] * 1e3:.2f} | "
                f"{r['queries_per_s']:,.0f} |"
            )
        else:
            lines.append(f"| {r['variant']} | {r['length']} | {r['status']} | |")
    publish("\n".join(lines), "throughput", "Attention forward")
    return rows


if __name__ == "__main__":
    from flows.cli import flow_main

    flow_main(bench_flow)
