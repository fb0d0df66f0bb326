"""Does the CUDA dispatch rule pick the faster path? Kernel vs reference, as the models call it.

    python reports/benchmarks/gpu/dispatch_rule.py [--lengths 32 64 128 256 512]
        [--batch 32] [--attn-dim 256] [--precision float32|bfloat16|both]
        [--mode fwd|fwd+bwd|both] [--json FILE]

`attention.additive.CUDA_KERNEL_MIN_WORK` sends an `AdditiveAttention` call with
`need_weights=False` to the fused Triton kernel from a number of tanh per call that depends
on whether a gradient is needed and on the inputs' precision. The first thresholds were read
off kernel-only timings at B=H=1, a=64; this script's first run (2026-11-27) set the float32
training one.
This times the module itself (projections, head split and merge included) at the models'
shape (B=32, one head, a=256, T_q = T_k, the last eighth of every key row padding) with the
kernel forced and with the reference path forced, alternating in ROUNDS rounds (medians of
`triton.testing.do_bench`), in float32 (the kernel's exact-tanh mode) and under bfloat16
autocast (the trainer's default on CUDA: tanh.approx), forward alone and forward + backward,
and says for each shape which path the rule takes and which was faster. Needs a CUDA GPU
and Triton.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch

from attnbench.attention import additive
from attnbench.attention.additive import AdditiveAttention

ROUNDS = 3
#: the threshold that forces one path (the rule compares the call's tanh count against it)
FORCE = {"kernel": 0, "reference": 2**62}


def rule_path(batch: int, length: int, attn_dim: int, dtype: torch.dtype, grad: bool) -> str:
    """The path the rule as committed takes for this call: "kernel" or "reference"."""
    taken = additive.fused_path(
        "cuda", {dtype}, grad, length, length * length * attn_dim, rows_and_heads=batch
    )
    return "kernel" if taken == "cuda" else "reference"


def _inputs(batch: int, length: int, hidden: int, grad: bool):
    """query (B, T, D) (a decoder's outputs: they carry a gradient in training), keys =
    values (B, T, D), padding mask (B, T) with the last eighth padding."""
    gen = torch.Generator(device="cuda").manual_seed(length)
    query = torch.randn(batch, length, hidden, generator=gen, device="cuda")
    keys = torch.randn(batch, length, hidden, generator=gen, device="cuda")
    mask = torch.zeros(batch, length, dtype=torch.bool, device="cuda")
    mask[:, length - length // 8 :] = True
    return query.requires_grad_(grad), keys.requires_grad_(grad), mask


def time_path(module, inputs, path: str, bf16: bool, grad: bool) -> float:
    """Median ms of one call (and its backward with `grad`) with `path` forced; checks first
    that the forced path is the one that ran."""
    import triton.testing

    query, keys, mask = inputs
    ran = []
    original = additive._cuda_kernel

    def spy():
        ran.append("kernel")
        return original()

    def call():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            context, _ = module(query, keys, keys, mask, need_weights=False)
        if grad:
            module.zero_grad(set_to_none=True)
            query.grad = keys.grad = None
            context.float().sum().backward()

    with additive.cuda_kernel_from(FORCE[path]):
        additive._cuda_kernel = spy
        try:
            with torch.set_grad_enabled(grad):
                call()
        finally:
            additive._cuda_kernel = original
        if ran != (["kernel"] if path == "kernel" else []):
            raise RuntimeError(f"forced {path} but the kernel ran {len(ran)} time(s)")
        with torch.set_grad_enabled(grad):
            return float(triton.testing.do_bench(call, warmup=10, rep=60, return_mode="median"))


def measure(batch: int, length: int, attn_dim: int, bf16: bool, grad: bool) -> dict:
    """One shape: both paths' median ms over ROUNDS alternating rounds (NaN where one fails)."""
    torch.manual_seed(0)
    module = AdditiveAttention(attn_dim, attn_dim).cuda()
    inputs = _inputs(batch, length, attn_dim, grad)
    times: dict[str, list[float]] = {"kernel": [], "reference": []}
    error = ""
    for _ in range(ROUNDS):
        for path in times:
            try:
                times[path].append(time_path(module, inputs, path, bf16, grad))
            except torch.cuda.OutOfMemoryError:
                times[path].append(float("nan"))
                error = f"{path}: out of memory"
            except Exception as exc:  # recorded, so one shape's failure keeps the others
                times[path].append(float("nan"))
                error = f"{path}: {type(exc).__name__}: {str(exc)[:200]}"
            finally:
                torch.cuda.empty_cache()
    kernel_ms, reference_ms = (statistics.median(times[p]) for p in ("kernel", "reference"))
    dtype = torch.bfloat16 if bf16 else torch.float32
    chosen = rule_path(batch, length, attn_dim, dtype, grad)
    faster = "kernel" if kernel_ms < reference_ms else "reference"
    if reference_ms != reference_ms:  # NaN: the reference ran out of memory
        faster = "kernel"
    return dict(
        dtype="bfloat16 autocast" if bf16 else "float32", gradient=grad, length=length,
        batch=batch, attn_dim=attn_dim, tanh_per_call=batch * length * length * attn_dim,
        kernel_ms=kernel_ms, reference_ms=reference_ms, speedup=reference_ms / kernel_ms,
        rule=chosen, faster=faster, rule_right=chosen == faster, error=error,
    )  # fmt: skip


def table(rows: list[dict]) -> str:
    """The rows as a markdown table and one summary line."""
    lines = [
        "| dtype | mode | T_q = T_k | tanh per call | kernel ms | reference ms "
        "| kernel speed-up | rule takes | faster | rule right | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dtype']} | {'fwd+bwd' if r['gradient'] else 'fwd'} | {r['length']} "
            f"| 2^{r['tanh_per_call'].bit_length() - 1} | {r['kernel_ms']:.3f} "
            f"| {r['reference_ms']:.3f} | {r['speedup']:.2f}x | {r['rule']} | {r['faster']} "
            f"| {'yes' if r['rule_right'] else '**no**'} | {r['error']} |"
        )
    right = sum(r["rule_right"] for r in rows)
    lines.append(f"\nThe rule took the faster path in {right} of {len(rows)} shapes.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--attn-dim", type=int, default=256, help="a = query = key dim")
    parser.add_argument("--precision", choices=("float32", "bfloat16", "both"), default="both")
    parser.add_argument("--mode", choices=("fwd", "fwd+bwd", "both"), default="both")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if min([*args.lengths, args.batch, args.attn_dim]) < 1:
        parser.error("--lengths, --batch and --attn-dim must be positive")
    if not torch.cuda.is_available() or additive._cuda_kernel() is None:
        print("CUDA and Triton are not both available: this check needs a GPU", file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name()}; rule: kernel from {additive.CUDA_KERNEL_MIN_WORK}")
    rows = []
    precisions = {"float32": [False], "bfloat16": [True], "both": [False, True]}
    modes = {"fwd": [False], "fwd+bwd": [True], "both": [False, True]}
    for bf16 in precisions[args.precision]:
        for grad in modes[args.mode]:
            for length in args.lengths:
                rows.append(measure(args.batch, length, args.attn_dim, bf16, grad))
                print(table(rows[-1:]).splitlines()[2], flush=True)
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
