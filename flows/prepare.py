"""Flow `prepare`: load every dataset of the benchmark and train its tokenizers (cached)."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from flows._common import as_config, compute_time, publish, resolve_config


@task(cache_policy=INPUTS + TASK_SOURCE, retries=2, retry_delay_seconds=[2, 10])
def prepare_dataset(config: dict[str, Any], dataset: str) -> dict[str, int]:
    """Corpora (downloaded with retries when not local) + tokenizers; cached on inputs+source."""
    from attnbench.pipeline import dataset_configs, prepare

    with compute_time("prepare"):
        return prepare(dataset_configs(as_config(config))[dataset])


@flow(name="prepare", log_prints=True)
def prepare_flow(
    preset: str | None = "quick",
    config: str | None = None,
    overrides: list[str] | None = None,
    resolved: dict[str, Any] | None = None,
) -> dict[str, dict[str, int]]:
    """Load every dataset of the benchmark and train (or reuse cached) tokenizers."""
    from attnbench.pipeline import dataset_configs

    tree = resolved or resolve_config(preset, config, overrides)
    sizes = {name: prepare_dataset(tree, name) for name in dataset_configs(as_config(tree))}
    columns = sorted({key for info in sizes.values() for key in info})
    lines = ["| dataset | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, info in sizes.items():
        lines.append(f"| {name} | " + " | ".join(str(info.get(c, "–")) for c in columns) + " |")
    publish("\n".join(lines), "data", "Prepared datasets")
    return sizes


if __name__ == "__main__":
    from flows.cli import flow_main

    flow_main(prepare_flow)
