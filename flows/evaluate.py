"""Flow `evaluate`: paired significance between variants on every test split (the per-run
scores are logged when each final run finishes)."""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from flows._common import DEFAULT_WORKDIR, as_config, compute_time, publish, resolve_config


@task
def significance_task(
    config: dict[str, Any],
    dataset: str,
    run_dirs: dict[str, dict[int, str]],
    workdir: str,
    parent_run_id: str | None,
) -> dict[str, Any]:
    from pathlib import Path

    from attnbench.pipeline import significance

    with compute_time("evaluate"):
        return significance(as_config(config), dataset, run_dirs, Path(workdir), parent_run_id)


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    runs: dict[str, dict[str, dict[int, dict[str, Any]]]] | None = None,
    preset: str | None = "quick",
    config: str | None = None,
    overrides: list[str] | None = None,
    workdir: str = DEFAULT_WORKDIR,
    resolved: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
) -> dict[str, Any]:
    """Paired bootstrap of every variant against the baseline on each test split and seed.

    `runs` is the train flow's output: {dataset: {variant: {seed: {run_dir, ...}}}}; without
    it, the final runs of `parent_run_id` (default: the latest pipeline run) come from MLflow."""
    tree = resolved or resolve_config(preset, config, overrides)
    if runs is None:
        from pathlib import Path

        from attnbench.pipeline import final_run_dirs

        parent_run_id, runs = final_run_dirs(as_config(tree), Path(workdir), parent_run_id)
    out = {}
    for dataset, variants in runs.items():
        dirs = {
            v: {int(s): r["run_dir"] for s, r in seeds.items()} for v, seeds in variants.items()
        }
        out[dataset] = significance_task(tree, dataset, dirs, workdir, parent_run_id)
    from attnbench.report.summary import significance_tables

    baseline = as_config(tree).benchmark.baseline
    text = "\n".join(f"### {d}\n\n{significance_tables(sig, baseline)}" for d, sig in out.items())
    publish(text, "significance", "Paired bootstrap vs baseline")
    return out


if __name__ == "__main__":
    from flows.cli import flow_main

    flow_main(evaluate_flow)
