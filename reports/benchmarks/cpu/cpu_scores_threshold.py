"""Where the Inductor-fused CPU scores beat the formula in training, to set
`attnbench.attention.additive.CPU_SCORES_MIN_WORK` (see ../README.md).

    python reports/benchmarks/cpu/cpu_scores_threshold.py [--repeats 15] [--steps 3]

Times one `AdditiveAttention` call forward and backward, as the trainer makes it
(`need_weights=False`, float32, a padding-free batch), with the scores from the formula
(backend numpy) and from `kernels/cpu_scores.py` (backend inductor, every size), over
decoder steps (T_q = 1, the Bahdanau decoder) and whole target sentences (T_q = T_k, the
Luong decoder); prints formula / fused per shape with the tanh per call, B * T_q * T_k * a.
The compile is paid before the first timing.

`--steps N` also times the first N of three whole training steps (fused Adam, vocab 6000,
random full-length sentences) of the Luong-decoder models the CPU presets train, at batch
shapes like theirs, each backend's step in turns on one model pair with the same weights.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from collections.abc import Callable

import torch
from cpu_kernel_threshold import median_seconds

from attnbench.attention import additive
from attnbench.attention.additive import AdditiveAttention
from attnbench.bench.model_modes import build_bench_model, interleaved, random_batch, train_step_fn

MIN_WORK = additive.CPU_SCORES_MIN_WORK
#: (hidden = emb = a, B, S = T) of the training steps: quick's model (hidden 128, 2000-token
#: batches) and multi30k-cpu's (hidden 256, 3000-token batches of ~18-30 tokens)
STEP_SHAPES = [(128, 110, 18), (256, 160, 18), (256, 100, 30)]
#: (B, T_q, T_k, a): decoder steps, then whole sentences
SHAPES = [
    *itertools.product((16, 64), (1,), (64, 128), (256, 512)),
    *((b, t, t, a) for b, t, a in itertools.product((16, 64), (16, 32, 64), (128, 256))),
]


def speedup(batch: int, t_q: int, t_k: int, dim: int, repeats: int) -> float:
    """Formula time / fused time for one forward + backward call."""
    att = AdditiveAttention(dim, dim, dim)
    query = torch.randn(batch, t_q, dim, requires_grad=True)
    keys = torch.randn(batch, t_k, dim, requires_grad=True)

    def step() -> None:
        context, _ = att(query, keys, keys, need_weights=False)
        context.sum().backward()

    def timed(backend: str) -> float:
        additive.CPU_KERNEL_BACKEND = backend
        return median_seconds(step, repeats)

    return timed("numpy") / timed("inductor")


def step_times(hidden: int, batch: int, length: int, repeats: int) -> tuple[float, float]:
    """Median ms of a training step with the formula's scores and with the fused ones."""
    data = random_batch(batch, length, length, 6000, "cpu")
    steps = []
    for backend in ("numpy", "inductor"):
        model = build_bench_model("additive", hidden, 6000, emb_dim=hidden, decoder="luong")
        step = train_step_fn(model.train(), data)
        steps.append(_with_backend(backend, step))
    times = interleaved(steps, torch.device("cpu"), repeats, warmup=1)
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3


def _with_backend(backend: str, step: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        additive.CPU_KERNEL_BACKEND = backend
        return step()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--shapes", type=int, default=len(SHAPES), help="only the first N")
    parser.add_argument("--steps", type=int, default=0, help="also this many training steps")
    args = parser.parse_args()
    additive.CPU_SCORES_MIN_WORK = 0  # the fused scores at every shape, to compare them
    print(f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print("| B | T_q | T_k | a | tanh per call | formula / fused |\n|---|---|---|---|---|---|")
    for batch, t_q, t_k, dim in SHAPES[: args.shapes]:
        ratio = speedup(batch, t_q, t_k, dim, args.repeats)
        work = batch * t_q * t_k * dim
        print(f"| {batch} | {t_q} | {t_k} | {dim} | {work} | {ratio:.2f}x |", flush=True)
    if not args.steps:
        return
    additive.CPU_SCORES_MIN_WORK = MIN_WORK  # as training runs it
    print("\n| training step, Luong decoder | formula ms | fused ms | speed-up |")
    print("|---|---|---|---|")
    for hidden, batch, length in STEP_SHAPES[: args.steps]:
        formula, fused = step_times(hidden, batch, length, args.repeats)
        print(f"| hidden {hidden}, B={batch}, S=T={length} | {formula:.1f} | {fused:.1f} | "
              f"{formula / fused:.2f}x |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
