"""Where a training step's time goes, to explain the key-projection ratio in ../README.md.

    python reports/benchmarks/cpu/key_projection_breakdown.py [--repeats 9] [--profile]
        [--tgt-lengths 10,20,40,80] [--batch 16 --src-len 80 --tgt-len 20 --hidden 512]

The benchmark's `key_projection` comparison at its 80 / 20 cell (B=16, S=80, T=20, hidden =
A = 512, vocab 8000, Bahdanau decoder, Adam; the cell where it saves least) times a whole
training step with U_a h_j computed once per source and at every target step. This script
times the parts of the once-step separately (encoder, decoder loop with attention, generator
+ loss, Adam fused as training runs it and PyTorch's default for comparison) and the key
projection alone (forward and backward of U_a over the (B*S, H) annotations), so the ratio
can be predicted: per-step / once = (once + (T - 1) * key projection) / once. Medians over
interleaved repeats.

Each part's matmul FLOPs (forward and backward, PyTorch's `FlopCounterMode`, counted in a
separate untimed call) give its GFLOP/s: the ratio is bounded by how fast the once-step's
small matmuls run, not by how much work the per-step path adds. `--profile` also prints the
decoder loop's costliest operators (`torch.profiler`, per input shape). `--tgt-lengths` also
times both steps at other target lengths (same B, S, model): the per-step path's extra work
grows with T while the encoder and Adam do not, so the ratio rises with T. The shape options
default to the benchmark's cell; the test suite runs the script on a tiny one.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import astuple

import torch
import torch.nn.functional as F
from step_shape import StepShape, add_shape_arguments, shape_from
from torch.utils.flop_counter import FlopCounterMode

from attnbench.bench.model_modes import (
    build_bench_model,
    decoder_loop_fn,
    median_ms,
    per_step_copy,
    random_batch,
    train_step_fn,
)
from attnbench.optim import adam


def gflop(fn: Callable[[], object]) -> float:
    """Matmul GFLOP of one call of fn (forward and backward), counted by PyTorch."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def print_profile(fn: Callable[[], object], calls: int, rows: int = 15) -> None:
    """fn's costliest operators by self CPU time, per input shape, in ms per call."""
    from torch.profiler import ProfilerActivity, profile

    fn()  # warm-up
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(calls):
            fn()
    events = [e for e in prof.key_averages(group_by_input_shape=True)
              if not e.key.startswith("autograd::")]  # fmt: skip
    events.sort(key=lambda e: -e.self_cpu_time_total)
    print(f"decoder loop, costliest operators (ms per loop, calls per loop, {calls} loops)")
    print("| operator | input shapes | ms | calls |\n|---|---|---|---|")
    for e in events[:rows]:
        shapes = str(e.input_shapes)
        print(f"| {e.key} | {shapes} | {e.self_cpu_time_total / 1e3 / calls:.2f} | "
              f"{e.count // calls} |")  # fmt: skip
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--profile", action="store_true", help="profile the decoder loop too")
    parser.add_argument("--tgt-lengths", default="", help="also the ratio at these T, e.g. 10,40")
    add_shape_arguments(parser)
    args = parser.parse_args()
    shape = shape_from(args)
    batch, src, tgt, hidden, vocab = astuple(shape)
    torch.manual_seed(0)
    model = build_bench_model("additive", hidden, vocab).train()
    data = random_batch(batch, src, tgt, vocab, "cpu")
    with torch.no_grad():
        annotations, _ = model.encoder(data["src"], data["src_lengths"])
    pre = torch.randn(batch * tgt, hidden, requires_grad=True)
    optimizer = adam(model.parameters(), lr=1e-4)  # fused, as training runs it
    unfused = torch.optim.Adam(model.parameters(), lr=1e-4)  # PyTorch's default on CPU
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    key_input = annotations.detach().requires_grad_()

    def encoder() -> None:
        out, fin = model.encoder(data["src"], data["src_lengths"])
        (out.sum() + fin.sum()).backward()

    decoder_loop = decoder_loop_fn(model, data)  # the attention lives here

    def generator_and_loss() -> None:
        logits = model.decoder.generator(pre)
        F.cross_entropy(logits, data["tgt_out"].reshape(-1)).backward()

    def key_projection() -> None:  # what the per-step path adds, once per extra target step
        model.decoder.attention.key_proj(key_input).sum().backward()

    parts: dict[str, Callable[[], object]] = {
        "encoder (bi-GRU, fwd+bwd)": encoder,
        "decoder: T steps with attention, readout (fwd+bwd)": decoder_loop,
        "generator + loss (fwd+bwd)": generator_and_loss,
        "Adam step (fused, as training runs it)": optimizer.step,
        "Adam step (PyTorch default, not fused)": unfused.step,
        "key projection U_a h_j (fwd+bwd), one": key_projection,
        "training step, keys once": train_step_fn(model, data),
        "training step, keys per step": train_step_fn(per_step_copy(model), data),
    }
    ms = median_ms(parts, args.repeats)  # in turns, the order reversed every other round
    print(f"{shape}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")  # fmt: skip
    if args.profile:
        print_profile(decoder_loop, calls=4)
    work = {name: gflop(fn) for name, fn in parts.items()}
    print("| part | ms | matmul GFLOP | GFLOP/s |\n|---|---|---|---|")
    for name, value in ms.items():
        rate = f"{work[name] / value * 1e3:.0f}" if work[name] else "-"
        print(f"| {name} | {value:.1f} | {work[name]:.2f} | {rate} |")
    once, per_step = ms["training step, keys once"], ms["training step, keys per step"]
    key = ms["key projection U_a h_j (fwd+bwd), one"]
    predicted = (once + (tgt - 1) * key) / once
    print(f"\nmeasured per-step / once: {per_step / once:.2f}x; predicted from the parts "
          f"(once + {tgt - 1} x key projection) / once: {predicted:.2f}x")  # fmt: skip
    needed = (tgt - 1) * key
    print(f"2x would need the once-step at or below {needed:.0f} ms ((T - 1) x key "
          f"projection), i.e. {once / needed:.2f}x faster than now")  # fmt: skip
    once_work = work["training step, keys once"]
    per_step_work = work["training step, keys per step"]
    key_rate = work["key projection U_a h_j (fwd+bwd), one"] / key  # GFLOP per ms
    print(f"matmul work per-step / once: {per_step_work / once_work:.2f}x; the once-step runs "
          f"at {once_work / once * 1e3:.0f} GFLOP/s, the key projection at {key_rate * 1e3:.0f}; "
          f"were the whole once-step's matmuls as fast, it would take {once_work / key_rate:.0f}"
          f" ms plus its other work")  # fmt: skip
    if args.tgt_lengths:
        lengths = [int(t) for t in args.tgt_lengths.split(",")]
        print_ratio_by_length(model, shape, lengths, key, args.repeats)


def print_ratio_by_length(
    model, shape: StepShape, lengths: list[int], key_ms: float, repeats: int
) -> None:
    """Both training steps at each target length T (shape's B, S and vocab), side by side;
    key_ms from the parts."""
    twin = per_step_copy(model)
    print("\n| T | keys once ms | keys per step ms | ratio | predicted |\n|---|---|---|---|---|")
    for length in lengths:
        data = random_batch(shape.batch, shape.src_len, length, shape.vocab, "cpu")
        ms = median_ms({"once": train_step_fn(model, data),
                        "per step": train_step_fn(twin, data)}, repeats)  # fmt: skip
        once, per_step = ms["once"], ms["per step"]
        predicted = (once + (length - 1) * key_ms) / once
        print(f"| {length} | {once:.1f} | {per_step:.1f} | {per_step / once:.2f}x | "
              f"{predicted:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
