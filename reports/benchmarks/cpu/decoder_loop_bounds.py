"""How far decoder-side changes move the key-projection ratio in ../README.md.

    python reports/benchmarks/cpu/decoder_loop_bounds.py [--repeats 9] [--rounds 3]
        [--batch 16 --src-len 80 --tgt-len 20 --hidden 512 --vocab 8000]

The benchmark's once-step at its 80 / 20 key-projection cell (B=16, S=80, T=20, hidden = A =
512, GRU Bahdanau decoder) spends most of its decoder time on per-step weight gradients
(each of T steps writes a whole weight-sized gradient from a 16-row matmul and sums it into
the weight's) and on the additive score's (B, 1, S, A) elementwise passes. Two measurements,
same weights and batch:

1. Whole training steps, keys once and keys per step, each with the decoder RNN's weight
   gradients gathered over all steps into one matmul (what cuDNN's RNN backward does; the
   default on CPU since 2026-11-28, `attnbench.models.stepwise_rnn`) and with one weight
   gradient per step from torch.{gru,lstm}_cell (`gather_weight_grads = False`, as before).
   The two paths' gradients are checked equal first.
2. The decoder loop (forward and backward) with additive attention and with dot attention,
   which builds no (B, 1, S, A) tensor and has no projections: their difference is all an
   additive-score kernel could save. The once-step without it and the ratio that would give
   are printed, taking the per-step path's extra time from the whole steps of (1).

Medians over interleaved repeats, `--rounds` times (the host's speed moves between rounds).
"""

from __future__ import annotations

import argparse
import copy

import torch
from step_shape import add_shape_arguments, shape_from
from torch import Tensor

from attnbench.bench.model_modes import (
    build_bench_model,
    decoder_loop_fn,
    median_ms,
    per_step_copy,
    random_batch,
    sequence_loss,
    train_step_fn,
)
from attnbench.models import Seq2Seq


def cell_functions_copy(model: Seq2Seq) -> Seq2Seq:
    """A copy of `model` whose decoder takes one RNN weight gradient per step (the old path)."""
    twin = copy.deepcopy(model)
    twin.decoder.gather_weight_grads = False
    return twin


def gradient_error(model: Seq2Seq, twin: Seq2Seq, data: dict[str, Tensor]) -> float:
    """Largest |difference| of the two models' gradients, relative to each tensor's largest."""
    grads = []
    for m in (model, twin):
        m.zero_grad()
        sequence_loss(m, data, False).backward()
        grads.append(dict(m.named_parameters()))
    error = max(((p.grad - grads[1][n].grad).abs().max() / p.grad.abs().max()).item()
                for n, p in grads[0].items())  # fmt: skip
    model.zero_grad()
    twin.zero_grad()
    return error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=3)
    add_shape_arguments(parser)
    args = parser.parse_args()
    shape = shape_from(args)
    torch.manual_seed(0)
    data = random_batch(shape.batch, shape.src_len, shape.tgt_len, shape.vocab, "cpu")
    model = build_bench_model("additive", shape.hidden, shape.vocab).train()
    per_step = per_step_copy(model)
    steps = {
        "keys once": train_step_fn(model, data),
        "keys per step": train_step_fn(per_step, data),
        "keys once, per-step weight gradients": train_step_fn(cell_functions_copy(model), data),
        "keys per step, per-step weight gradients": train_step_fn(
            cell_functions_copy(per_step), data
        ),
    }
    loops = {
        "additive": decoder_loop_fn(model, data),
        "dot": decoder_loop_fn(build_bench_model("dot", shape.hidden, shape.vocab).train(), data),
    }
    print(f"{shape}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} per round")  # fmt: skip
    error = gradient_error(model, cell_functions_copy(model), data)
    print(f"gathered vs per-step weight gradients: largest difference {error:.1e} of each "
          "tensor's largest entry (float32)\n")  # fmt: skip
    if error > 1e-4:  # float32 rounding of a different summation order stays far below
        raise SystemExit("the gathered weight gradients differ from the cell functions': not timed")
    print("| round | once ms | per-step ms | ratio | once, per-step weight gradients ms | "
          "per-step, per-step weight gradients ms | their ratio | decoder loop additive ms | "
          "dot ms | once-step without the additive score's cost | ratio then |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for round_ in range(1, args.rounds + 1):
        ms = median_ms({**steps, **{f"loop {k}": f for k, f in loops.items()}}, args.repeats)
        once, per = ms["keys once"], ms["keys per step"]
        g_once = ms["keys once, per-step weight gradients"]
        g_per = ms["keys per step, per-step weight gradients"]
        bound = once - (ms["loop additive"] - ms["loop dot"])
        then = (bound + per - once) / bound
        print(f"| {round_} | {once:.1f} | {per:.1f} | {per / once:.2f}x | {g_once:.1f} | "
              f"{g_per:.1f} | {g_per / g_once:.2f}x | {ms['loop additive']:.1f} | "
              f"{ms['loop dot']:.1f} | {bound:.0f} ms | {then:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
