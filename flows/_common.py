"""What every flow shares: telemetry defaults, config resolution, run tags."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}
for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)

DEFAULT_WORKDIR = "attnbench-runs"


def resolve_config(
    preset: str | None = None, config: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Preset/file/overrides -> a validated, JSON-safe config dict (what flows pass around)."""
    from attnbench.config import config_to_dict, load_config
    from attnbench.pipeline import check_benchmark

    cfg = load_config(Path(config) if config else None, preset, overrides)
    check_benchmark(cfg)
    return config_to_dict(cfg)


def as_config(tree: dict[str, Any]):
    from attnbench.config import validate_config

    return validate_config(tree)


def run_tags() -> dict[str, Any]:
    """Tags every MLflow run of this flow run carries (git commit, Prefect flow-run id)."""
    from prefect.runtime import flow_run

    from attnbench.pipeline import git_commit

    return {"git_commit": git_commit(), "prefect_flow_run_id": flow_run.get_id()}


#: seconds spent inside library work (training, decoding, scoring) per step, in this process:
#: the parent flow compares it with each step's wall time to measure orchestration overhead
COMPUTE_SECONDS: dict[str, float] = defaultdict(float)


@contextmanager
def compute_time(step: str) -> Iterator[None]:
    tic = time.perf_counter()
    try:
        yield
    finally:
        COMPUTE_SECONDS[step] += time.perf_counter() - tic


def publish(markdown: str, key: str, description: str) -> None:
    """A flow's headline numbers: a Prefect Markdown artifact, and the same text in its log."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown, key=key, description=description)
    print(markdown)
