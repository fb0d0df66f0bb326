"""Flow `tune`: one Optuna study per (dataset, variant), equal budgets, trials in MLflow."""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from flows._common import (
    COMPUTE_SECONDS,
    DEFAULT_WORKDIR,
    as_config,
    publish,
    resolve_config,
    run_tags,
)


@task(retries=0)  # a study resumes from its storage; blind retries would double the budget
def tune_variant(
    config: dict[str, Any], dataset: str, variant: str, workdir: str, parent_run_id: str | None
) -> dict[str, Any]:
    from pathlib import Path

    from attnbench.pipeline import tune_variant as run

    out = run(as_config(config), dataset, variant, Path(workdir), parent_run_id, run_tags())
    COMPUTE_SECONDS["tune"] += out["compute_seconds"]  # training inside the trials
    return out


@flow(name="tune", log_prints=True)
def tune_flow(
    preset: str | None = "quick",
    config: str | None = None,
    overrides: list[str] | None = None,
    workdir: str = DEFAULT_WORKDIR,
    resolved: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Tune every attention variant on every dataset with the same Optuna budget.

    Returns {dataset: {variant: {best_params, best_value, states, ...}}}.
    """
    from attnbench.pipeline import dataset_configs

    tree = resolved or resolve_config(preset, config, overrides)
    cfg = as_config(tree)
    best: dict[str, dict[str, dict[str, Any]]] = {}
    for dataset in dataset_configs(cfg):
        best[dataset] = {}
        for variant in cfg.benchmark.variants:
            best[dataset][variant] = tune_variant(tree, dataset, variant, workdir, parent_run_id)
    lines = [f"| dataset | variant | best {cfg.tune.metric} | trials |", "|---|---|---|---|"]
    for dataset, variants in best.items():
        for variant, res in variants.items():
            lines.append(f"| {dataset} | {variant} | {res['best_value']:.2f} | {res['states']} |")
    publish("\n".join(lines), "tuning", "Optuna best per study")
    return best


if __name__ == "__main__":
    from flows.cli import flow_main

    flow_main(tune_flow)
