"""Flow `train`: the tuned configuration of each variant, trained with every seed and
evaluated on every test split (each seed an MLflow child run with its model)."""

from __future__ import annotations

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
def train_seed(
    config: dict[str, Any],
    dataset: str,
    variant: str,
    settings: dict[str, Any],
    seed: int,
    workdir: str,
    parent_run_id: str | None,
) -> dict[str, Any]:
    from pathlib import Path

    from attnbench.pipeline import train_seed as run

    exit_if_terminating()
    print(f"training {dataset}/{variant} seed {seed}")
    return run(
        as_config(config), dataset, variant, settings, seed, Path(workdir), parent_run_id,
        run_tags(),
    )  # fmt: skip


@flow(name="train", log_prints=True)
def train_flow(
    preset: str | None = "quick",
    config: str | None = None,
    overrides: list[str] | None = None,
    workdir: str = DEFAULT_WORKDIR,
    best: dict[str, dict[str, dict[str, Any]]] | None = None,
    resolved: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
    parallel: int = 1,
) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
    """Train each variant's tuned settings with every seed and score all test splits.

    `best` is the tune flow's output; without it the config's own settings are trained.
    `parallel` models train at once, each in its own worker process.
    """
    from attnbench.pipeline import dataset_configs

    check_parallel(parallel)
    tree = resolved or resolve_config(preset, config, overrides)
    cfg = as_config(tree)
    calls = [
        {"config": tree, "dataset": dataset, "variant": variant,
         "settings": ((best or {}).get(dataset, {}).get(variant) or {}).get("best_params", {}),
         "seed": seed, "workdir": workdir, "parent_run_id": parent_run_id}
        for dataset in dataset_configs(cfg)
        for variant in cfg.benchmark.variants
        for seed in cfg.benchmark.seeds
    ]  # fmt: skip
    results: dict[int, dict[str, Any]] = {}

    def collect(index: int, out: dict[str, Any]) -> None:
        results[index] = out
        COMPUTE_SECONDS["train"] += out["compute_seconds"]  # training + decoding + scoring

    run_in_workers(train_seed, calls, parallel, collect)
    runs: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    lines = [
        "| dataset | variant | seed | split | BLEU | chrF | TER |",
        "|---|---|---|---|---|---|---|",
    ]
    for index, call in enumerate(calls):  # in config order, however the runs finished
        out = results[index]
        runs.setdefault(call["dataset"], {}).setdefault(call["variant"], {})[call["seed"]] = out
        for split, s in out["scores"].items():
            lines.append(
                f"| {call['dataset']} | {call['variant']} | {call['seed']} | {split} | "
                f"{s['bleu']:.2f} | {s['chrf']:.2f} | {s['ter']:.2f} |"
            )
    publish("\n".join(lines), "final-scores", "Test scores")
    return runs


if __name__ == "__main__":
    from flows.cli import flow_main

    flow_main(train_flow)
