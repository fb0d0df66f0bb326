"""Side-by-side forward/backward times of two versions of the fused additive kernel, one GPU run.

    python reports/benchmarks/gpu/kernel_versions.py --old PATH/triton_additive_v5.py

PATH is an earlier `attnbench/attention/kernels/triton_additive.py` (e.g. from `git show
<commit>:attnbench/attention/kernels/triton_additive.py`). The shape is the benchmark's
(B=2, H=4, a=dv=64, the last eighth of every key row padding); the two versions alternate
in each of ROUNDS rounds and the table gives medians of `triton.testing.do_bench`, so a
ratio is measured side by side, not across sessions. Needs a CUDA GPU and Triton.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import triton

from attnbench.attention.kernels import KERNEL_FILE_HINT, load_kernel_file, tanh_limit
from attnbench.attention.kernels import triton_additive as new

ROUNDS = 5


def _inputs(length: int, batch: int = 2, heads: int = 4, dim: int = 64):
    gen = torch.Generator(device="cuda").manual_seed(length)
    shapes = [(batch, heads, length, dim), (batch, heads, length, dim), (heads, dim),
              (batch, heads, length, dim)]  # fmt: skip
    scales = [1.0, 1.0, dim**-0.5, 1.0]
    leaves = [
        (torch.randn(*shape, generator=gen, device="cuda") * scale).requires_grad_()
        for shape, scale in zip(shapes, scales, strict=True)
    ]
    mask = torch.zeros(batch, length, dtype=torch.bool, device="cuda")
    mask[:, length - length // 8 :] = True
    return leaves, mask


def _time(module, leaves, mask, backward: bool) -> float:
    grad = torch.randn(*leaves[3].shape, device="cuda")

    def run():
        out = module.fused_additive_attention(*leaves, mask)
        if backward:
            for leaf in leaves:
                leaf.grad = None
            out.backward(grad)

    return float(triton.testing.do_bench(run, warmup=25, rep=200, return_mode="median"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="path to the earlier triton_additive.py")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    args = parser.parse_args(argv)
    if not Path(args.old).is_file():
        parser.error(f"--old {args.old}: no such file; {KERNEL_FILE_HINT}")
    if not torch.cuda.is_available():
        print("CUDA is not available: this comparison needs a GPU", file=sys.stderr)
        return 2
    old = load_kernel_file(args.old)
    limit = tanh_limit.tanh_rate()
    print(f"{torch.cuda.get_device_name()}: tanh limit {limit:.3e}/s (tanh.approx loop)")
    print("| T | mode | old ms | new ms | old / new | new, share of the tanh limit |")
    print("|---|---|---|---|---|---|")
    for length in args.lengths:
        leaves, mask = _inputs(length)
        tanh = 2 * 4 * length * (length - length // 8) * 64  # valid keys only, as the bench
        for backward in (False, True):
            times = {"old": [], "new": []}
            for _ in range(ROUNDS):
                for name, module in (("old", old), ("new", new)):
                    times[name].append(_time(module, leaves, mask, backward))
            t_old, t_new = (statistics.median(times[k]) for k in ("old", "new"))
            work = tanh * (3 if backward else 1)
            print(
                f"| {length} | {'fwd+bwd' if backward else 'fwd'} | {t_old:.3f} | {t_new:.3f} | "
                f"{t_old / t_new:.2f}x | {work / (t_new * 1e-3) / limit:.1%} |",
                flush=True,
            )
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
