"""Flow `report`: the summary built from what MLflow holds, logged back as an artifact."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows._common import DEFAULT_WORKDIR, as_config, compute_time, resolve_config


@task
def write_report(
    config: dict[str, Any],
    workdir: str,
    reports_dir: str,
    parent_run_id: str | None,
) -> str:
    from pathlib import Path

    from attnbench.pipeline import report

    with compute_time("report"):
        path = report(as_config(config), Path(workdir), Path(reports_dir), parent_run_id)
    return str(path)


@flow(name="report", log_prints=True)
def report_flow(
    preset: str | None = "quick",
    config: str | None = None,
    overrides: list[str] | None = None,
    workdir: str = DEFAULT_WORKDIR,
    reports_dir: str = "reports",
    resolved: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
) -> str:
    """Write the summary report from what MLflow holds and publish it as an artifact."""
    tree = resolved or resolve_config(preset, config, overrides)
    path = write_report(tree, workdir, reports_dir, parent_run_id)
    from pathlib import Path

    summary = Path(path).parent / "summary.md"
    create_markdown_artifact(summary.read_text(encoding="utf-8"), key="report")
    print(f"report: {path}")
    return path


if __name__ == "__main__":
    from flows.cli import flow_main

    flow_main(report_flow)
