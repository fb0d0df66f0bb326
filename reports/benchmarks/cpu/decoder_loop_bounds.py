"""How far decoder-side changes move the key-projection ratio in ../README.md.

    python reports/benchmarks/cpu/decoder_loop_bounds.py [--repeats 9] [--rounds 3]
        [--batch 16 --src-len 80 --tgt-len 20 --hidden 512 --vocab 8000]

The benchmark's once-step at its 80 / 20 key-projection cell (B=16, S=80, T=20, hidden = A =
512, GRU Bahdanau decoder) spends most of its decoder time on per-step weight gradients
(each of T steps writes a whole weight-sized gradient from a 16-row matmul and sums it into
the weight's) and on the additive score's (B, 1, S, A) elementwise passes. Two measurements,
same weights and batch:

1. Whole training steps, keys once and keys per step, each as trained and with the decoder
   RNN's weight gradients gathered over all steps into one matmul (what cuDNN's RNN backward
   does): each step uses the detached weight and adds a zero from `_GatheredWeightGrad`,
   whose backward receives every step's output gradient at once; the GRU gates are written out
   as torch.gru_cell computes them. Its gradients are checked equal to the module's first.
2. The decoder loop (forward and backward) with additive attention and with dot attention,
   which builds no (B, 1, S, A) tensor and has no projections: their difference is all an
   additive-score kernel could save. The once-step without it and the ratio that would give
   are printed, taking the per-step path's extra time from the whole steps of (1).

Medians over interleaved repeats, `--rounds` times (the host's speed moves between rounds).
"""

from __future__ import annotations

import argparse
import copy
import types
from dataclasses import replace

import torch
import torch.nn.functional as F
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
from attnbench.models.decoder import AttentiveDecoder, DecoderState, Memory


class _GatheredWeightGrad(torch.autograd.Function):
    """Zeros (T, B, N) whose backward returns dW = sum_t grad_t^T x_t in one matmul.

    Step t computes x_t W^T with W detached and adds zeros[t]: the value is unchanged, the
    input gradient flows through the detached product, and the weight gradient arrives here
    once, for all steps. `inputs` is filled with the detached x_t while the loop runs.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, inputs: list[Tensor], steps: int, rows: int) -> Tensor:
        ctx.inputs = inputs
        return weight.new_zeros(steps, rows, weight.shape[0])

    @staticmethod
    def backward(ctx, grad: Tensor):
        x = torch.stack(ctx.inputs).flatten(0, 1)  # (T * B, K)
        return grad.flatten(0, 1).t().mm(x), None, None, None


class _GatheredGRUWeights:
    """One teacher-forced pass's single-layer GRU weights, gradients gathered over its steps."""

    def __init__(self, rnn: torch.nn.GRU, steps: int, rows: int) -> None:
        self.step = 0
        weights = {"ih": rnn.weight_ih_l0, "hh": rnn.weight_hh_l0}
        self.bias = {"ih": rnn.bias_ih_l0, "hh": rnn.bias_hh_l0}
        self.inputs: dict[str, list[Tensor]] = {name: [] for name in weights}
        self.fixed = {name: w.detach() for name, w in weights.items()}
        self.zeros = {name: _GatheredWeightGrad.apply(w, self.inputs[name], steps, rows)
                      .unbind(0) for name, w in weights.items()}  # fmt: skip

    def gates(self, name: str, x: Tensor) -> Tensor:
        """x (B, K) -> x W^T + b (B, 3H), W's gradient deferred to the gathered matmul."""
        self.inputs[name].append(x.detach())
        return F.linear(x, self.fixed[name], self.bias[name]) + self.zeros[name][self.step]


def _gathered_forward(self, tgt_in: Tensor, state: DecoderState, memory: Memory,
                      need_weights: bool = True):  # fmt: skip
    self._gathered = (_GatheredGRUWeights(self.rnn, tgt_in.shape[1], tgt_in.shape[0])
                      if torch.is_grad_enabled() else None)  # fmt: skip
    try:
        return type(self).forward(self, tgt_in, state, memory, need_weights)
    finally:
        self._gathered = None


def _gathered_rnn_step(self, rnn_input: Tensor, state: DecoderState):
    weights = self._gathered
    if weights is None:
        return AttentiveDecoder._rnn_step(self, rnn_input, state)
    hidden = state.hidden[0]
    gates_i = weights.gates("ih", rnn_input.squeeze(1))
    gates_h = weights.gates("hh", hidden)
    weights.step += 1
    i_r, i_z, i_n = gates_i.chunk(3, 1)
    h_r, h_z, h_n = gates_h.chunk(3, 1)
    reset, update = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    new = torch.tanh(i_n + reset * h_n)
    hidden = new + update * (hidden - new)  # (1 - z) n + z h, as torch.gru_cell
    return hidden.unsqueeze(1), replace(state, hidden=hidden.unsqueeze(0))


def gathered_copy(model: Seq2Seq) -> Seq2Seq:
    """A copy of `model` (single-layer GRU decoder) whose RNN weight gradients are gathered."""
    twin = copy.deepcopy(model)
    twin.decoder.forward = types.MethodType(_gathered_forward, twin.decoder)
    twin.decoder._rnn_step = types.MethodType(_gathered_rnn_step, twin.decoder)
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
        "keys once, gathered": train_step_fn(gathered_copy(model), data),
        "keys per step, gathered": train_step_fn(gathered_copy(per_step), data),
    }
    loops = {
        "additive": decoder_loop_fn(model, data),
        "dot": decoder_loop_fn(build_bench_model("dot", shape.hidden, shape.vocab).train(), data),
    }
    print(f"{shape}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} per round")  # fmt: skip
    error = gradient_error(model, gathered_copy(model), data)
    print(f"gathered vs module gradients: largest difference {error:.1e} of each tensor's "
          "largest entry (float32)\n")  # fmt: skip
    if error > 1e-4:  # float32 rounding of a different summation order stays far below
        raise SystemExit("the gathered weight gradients differ from the module's: not timed")
    print("| round | once ms | per-step ms | ratio | once gathered ms | per-step gathered ms | "
          "ratio gathered | decoder loop additive ms | dot ms | once-step without the "
          "additive score's cost | ratio then |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for round_ in range(1, args.rounds + 1):
        ms = median_ms({**steps, **{f"loop {k}": f for k, f in loops.items()}}, args.repeats)
        once, per = ms["keys once"], ms["keys per step"]
        g_once, g_per = ms["keys once, gathered"], ms["keys per step, gathered"]
        bound = once - (ms["loop additive"] - ms["loop dot"])
        then = (bound + per - once) / bound
        print(f"| {round_} | {once:.1f} | {per:.1f} | {per / once:.2f}x | {g_once:.1f} | "
              f"{g_per:.1f} | {g_per / g_once:.2f}x | {ms['loop additive']:.1f} | "
              f"{ms['loop dot']:.1f} | {bound:.0f} ms | {then:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
