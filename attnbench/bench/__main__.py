"""`python -m attnbench.bench --device cuda --out DIR`: the whole benchmark, standalone.

Imports only torch, numpy, pandas, pyarrow and matplotlib (never pydantic, MLflow or Prefect),
so it runs on a bare GPU machine. Writes rows.parquet, limits.parquet, report.md, meta.json
and PNG plots into DIR. Mistakes in the arguments are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from attnbench.errors import UserError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m attnbench.bench",
        description="Attention speed and memory per implementation and length, with limits.",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], help="[default: cuda if available]")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--lengths", help="T_q = T_k values, e.g. 64,256,1024,4096")
    p.add_argument("--batch", help="batch sizes, e.g. 1,8")
    p.add_argument("--dims", help="per-head dimensions (a or d), e.g. 64,128")
    p.add_argument("--heads", type=int, help="attention heads")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--modes", help="any of forward,backward,model [default: all]")
    p.add_argument("--implementations", help="subset, e.g. chunked,sdpa [default: all]")
    p.add_argument("--max-backward-length", type=int, help="longest backward cell")
    p.add_argument("--max-seconds", type=float, default=600.0, help="total time budget")
    p.add_argument("--cell-seconds", type=float, default=20.0, help="timed seconds per cell")
    p.add_argument("--repeats", type=int, help="timed repeats per cell [cpu 5, cuda 20]")
    p.add_argument("--warmup", type=int, help="warm-up calls per cell [cpu 1, cuda 3]")
    p.add_argument(
        "--comparison-repeats",
        type=int,
        help="timed rounds of each side of the full model's side-by-side comparisons "
        "(key projection once vs per step, fused vs reference path) [15]",
    )
    p.add_argument(
        "--isolation",
        choices=["subprocess", "inline"],
        default="subprocess",
        help="CPU cells in a fresh child each (peak RSS) or in this process",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        out = run(args, argv if argv is not None else sys.argv[1:])
    except UserError as exc:
        print(f"attnbench.bench: error: {exc}", file=sys.stderr)
        return 2
    print(out["report"].read_text(encoding="utf-8"))
    print(f"wrote {', '.join(str(p) for p in out.values())}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Path]:
    import torch

    from attnbench.bench.grid import default_spec, parse_ints
    from attnbench.bench.outputs import write
    from attnbench.bench.runner import COMPARISON_REPEATS, RunOptions, run_benchmark

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but torch sees no CUDA GPU; use --device cpu")
    for option in ("repeats", "warmup", "comparison_repeats"):
        value, least = getattr(args, option), 0 if option == "warmup" else 1
        if value is not None and value < least:
            flag = "--" + option.replace("_", "-")
            raise UserError(f"{flag} must be at least {least}, got {value}")
    modes = args.modes.split(",") if args.modes else None
    if modes and not set(modes) <= {"forward", "backward", "model"}:
        raise UserError(f"--modes takes forward, backward, model; got {args.modes!r}")
    spec = default_spec(
        device,
        lengths=parse_ints(args.lengths, "--lengths") if args.lengths else None,
        batches=parse_ints(args.batch, "--batch") if args.batch else None,
        dims=parse_ints(args.dims, "--dims") if args.dims else None,
        heads=args.heads,
        dtype=args.dtype,
        modes=modes,
        max_backward_length=args.max_backward_length,
        names=args.implementations.split(",") if args.implementations else None,
    )
    cuda = device == "cuda"
    options = RunOptions(
        warmup=args.warmup if args.warmup is not None else (3 if cuda else 1),
        repeats=args.repeats if args.repeats is not None else (20 if cuda else 5),
        comparison_repeats=args.comparison_repeats or COMPARISON_REPEATS,
        cell_seconds=args.cell_seconds,
        max_seconds=args.max_seconds,
        isolation=args.isolation,
    )
    result = run_benchmark(spec, options)
    command = "python -m attnbench.bench " + shlex.join(argv)
    return write(result, args.out, command)


if __name__ == "__main__":
    sys.exit(main())
