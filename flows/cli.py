"""`python -m flows.<name>`: run one flow with the same options as `attnbench <name>`."""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import Any

from attnbench.errors import UserError
from flows._common import process_settings


def flow_main(flow: Any) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m flows.{flow.name}", description=flow.description
    )
    params = inspect.signature(flow.fn).parameters
    default_preset = params["preset"].default if "preset" in params else None
    default_preset = default_preset or "quick"
    parser.add_argument("--preset", default=None, help=f"named preset (default: {default_preset})")
    parser.add_argument("--config", default=None, help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="override one setting, e.g. train.epochs=2 (repeatable)")  # fmt: skip
    parser.add_argument(
        "--workdir", default="attnbench-runs", help="runs, MLflow and Optuna stores"
    )
    if "parallel" in params:
        parser.add_argument("--parallel", type=int, default=1,
                            help="cells trained at once, each in a worker process")  # fmt: skip
    args = parser.parse_args()
    kwargs: dict[str, Any] = {
        "preset": args.preset or (None if args.config else default_preset),
        "config": args.config,
        "overrides": args.overrides,
    }
    if flow.name != "prepare":
        kwargs["workdir"] = args.workdir
    if "parallel" in params:
        kwargs["parallel"] = args.parallel
    if flow.name == "evaluate":
        print(
            "the evaluate flow needs the train flow's output; run `attnbench run`", file=sys.stderr
        )
        sys.exit(2)
    try:
        with process_settings():
            flow(**kwargs)
    except UserError as exc:
        print(f"attnbench: error: {exc}", file=sys.stderr)
        sys.exit(2)
