"""Teacher-forced RNN steps whose weight gradients are gathered into one matmul per weight.

A decoder that attends before each step (Bahdanau; Luong with input feeding) runs its RNN one
target step at a time, so autograd computes each weight's gradient once per step: a (3H or
4H, B) x (B, I) product that writes a whole weight-sized tensor, then sums it into the
gradient. On CPU that is memory traffic, not arithmetic (a 2-thread AMD host spent several
times a step's forward in the backward; reports/benchmarks/README.md). cuDNN's RNN backward
computes dW = sum_t g_t^T x_t as one matmul over all steps instead; this does the same for
the stepwise decoders. Each step multiplies by the detached weight and adds a zero slice from
`_GatheredWeightGrad`, whose backward receives every step's gate gradient at once. Values and
gradients are the module's (tests/test_stepwise_rnn.py); only the summation order differs.

Shapes: B batch, I input size, H hidden size, L layers, N = 3H (GRU) or 4H (LSTM) gates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


class _GatheredWeightGrad(torch.autograd.Function):
    """Zeros (steps, B, N) whose backward returns dW = sum_t grad_t^T x_t in one matmul.

    `inputs` is the list the steps fill with their detached x_t (B, K) while the loop runs;
    by the backward it holds every step taken.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, inputs: list[Tensor], steps: int, rows: int) -> Tensor:
        ctx.inputs = inputs
        return weight.new_zeros(steps, rows, weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        x = torch.stack(ctx.inputs)  # (steps taken, B, K)
        g = grad[: x.shape[0]].flatten(0, 1)  # (steps taken * B, N)
        return g.t().mm(x.flatten(0, 1)), None, None, None


class _GatheredLinear:
    """x W^T + b for one step after another, W's gradient deferred to one matmul."""

    def __init__(self, weight: Tensor, bias: Tensor, steps: int, rows: int) -> None:
        self.inputs: list[Tensor] = []
        self.weight = weight.detach()
        self.bias = bias
        self.zeros = _GatheredWeightGrad.apply(weight, self.inputs, steps, rows).unbind(0)

    def __call__(self, x: Tensor) -> Tensor:
        """x (B, K) -> (B, N)."""
        step = len(self.inputs)
        self.inputs.append(x.detach())
        return F.linear(x, self.weight, self.bias) + self.zeros[step]


def gru_update(gates_x: Tensor, gates_h: Tensor, hidden: Tensor) -> Tensor:
    """torch.gru_cell's update from W_ih x + b_ih and W_hh h + b_hh (B, 3H), h (B, H) -> (B, H)."""
    x_r, x_z, x_n = gates_x.chunk(3, 1)
    h_r, h_z, h_n = gates_h.chunk(3, 1)
    reset, update = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    new = torch.tanh(x_n + reset * h_n)
    return new + update * (hidden - new)  # (1 - z) n + z h


def lstm_update(gates: Tensor, cell: Tensor) -> tuple[Tensor, Tensor]:
    """torch.lstm_cell's update from W_ih x + b_ih + W_hh h + b_hh (B, 4H), c (B, H) -> (h, c)."""
    i, f, g, o = gates.chunk(4, 1)
    cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(cell), cell


class StepwiseRNN:
    """One teacher-forced pass of up to `steps` one-token steps through `rnn`'s weights.

    Built per forward pass (its gradient nodes belong to that pass's graph); `step` takes
    and returns the decoder's state tensors, with dropout between layers as nn.GRU/nn.LSTM.
    """

    def __init__(self, rnn: nn.GRU | nn.LSTM, steps: int, rows: int) -> None:
        self.is_lstm = isinstance(rnn, nn.LSTM)
        self.dropout = rnn.dropout
        self.training = rnn.training
        self.layers = [
            tuple(
                _GatheredLinear(
                    getattr(rnn, f"weight_{kind}_l{layer}"),
                    getattr(rnn, f"bias_{kind}_l{layer}"),
                    steps,
                    rows,
                )
                for kind in ("ih", "hh")
            )
            for layer in range(rnn.num_layers)
        ]

    def step(
        self, x: Tensor, hidden: Tensor, cell: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """x (B, I), hidden and cell (L, B, H) -> (top output (B, H), hidden, cell (L, B, H))."""
        hiddens, cells = [], []
        for layer, (input_proj, hidden_proj) in enumerate(self.layers):
            gates_x, gates_h = input_proj(x), hidden_proj(hidden[layer])
            if self.is_lstm:
                h, c = lstm_update(gates_x + gates_h, cell[layer])
                cells.append(c)
            else:
                h = gru_update(gates_x, gates_h, hidden[layer])
            hiddens.append(h)
            last = layer == len(self.layers) - 1
            x = h if last else F.dropout(h, self.dropout, self.training)
        return x, torch.stack(hiddens), torch.stack(cells) if self.is_lstm else None
