"""Attentive RNN decoders. Both styles take any registered attention variant.

`bahdanau` (Bahdanau et al. 2015): attend with the previous state s_{i-1}; the context goes
into the RNN input; the readout sees [s_i; c_i; E y_{i-1}].
`luong` (Luong et al. 2015): RNN first, attend with the current state h_t, attentional hidden
h~_t = tanh(W_c [c_t; h_t]) (eq. 5); with input feeding h~_{t-1} joins the next input. Without
input feeding nothing in the recurrence depends on attention, so training runs the RNN over
all target steps at once and attends for all of them in one call.

Shapes: B batch, S source length, T target length, H hidden size, E embedding size, V vocab.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbench.attention import Attention
from attnbench.models.encoder import RNN_CLASSES, RNNType
from attnbench.models.stepwise_rnn import StepwiseRNN

DecoderStyle = Literal["bahdanau", "luong"]

#: one layer's parameters of nn.GRU / nn.LSTM, in torch.{gru,lstm}_cell's argument order
RNN_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


@dataclass
class Memory:
    """What the decoder attends to, computed once per source sentence.

    keys (B, S, H) encoder annotations (also the values); mask (B, S) True = padding;
    prepared (B, S, D_s) the attention's key projection, so no step recomputes it.
    """

    keys: Tensor
    mask: Tensor
    prepared: Tensor

    def index_select(self, index: Tensor) -> Memory:
        """Rows picked/reordered by index (N,): beam search expands and reorders with it."""
        return Memory(self.keys[index], self.mask[index], self.prepared[index])


@dataclass
class DecoderState:
    """Recurrent state: hidden (L, B, H); cell (L, B, H) for LSTM; feed (B, 1, H) input feeding."""

    hidden: Tensor
    cell: Tensor | None = None
    feed: Tensor | None = None

    def index_select(self, index: Tensor) -> DecoderState:
        return DecoderState(
            self.hidden[:, index],
            None if self.cell is None else self.cell[:, index],
            None if self.feed is None else self.feed[index],
        )

    def rnn_hx(self) -> Tensor | tuple[Tensor, Tensor]:
        return self.hidden if self.cell is None else (self.hidden, self.cell)


class AttentiveDecoder(nn.Module):
    """Embedding, recurrence, attention, readout and generator; styles differ in `_step`."""

    style: DecoderStyle
    #: teacher-forced steps on CPU gather the RNN's weight gradients (`stepwise_rnn`); the
    #: benchmark scripts turn it off on a copy to time the difference
    gather_weight_grads: bool = True

    def __init__(
        self,
        vocab_size: int,
        emb_dim: int,
        hidden_dim: int,
        attention: Attention,
        rnn_input_dim: int,
        num_layers: int = 1,
        rnn: RNNType = "gru",
        dropout: float = 0.0,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_id)
        self.attention = attention
        self.rnn = RNN_CLASSES[rnn](
            rnn_input_dim,
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.bridge = nn.Linear(hidden_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.generator = nn.Linear(hidden_dim, vocab_size)
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.is_lstm = rnn == "lstm"
        self._stepwise: StepwiseRNN | None = None

    def memory(self, encoder_outputs: Tensor, src_mask: Tensor) -> Memory:
        """encoder_outputs (B, S, H), src_mask (B, S) -> Memory, key projection done once."""
        return Memory(encoder_outputs, src_mask, self.attention.prepare_keys(encoder_outputs))

    def init_state(self, encoder_final: Tensor) -> DecoderState:
        """encoder_final (B, H) -> initial state, tanh(W s) in every layer (Bahdanau's s_0)."""
        s0 = torch.tanh(self.bridge(encoder_final))
        hidden = s0.unsqueeze(0).repeat(self.num_layers, 1, 1).contiguous()
        cell = torch.zeros_like(hidden) if self.is_lstm else None
        return DecoderState(hidden, cell, self._initial_feed(s0))

    def _initial_feed(self, s0: Tensor) -> Tensor | None:
        return None

    def _attend(
        self, query: Tensor, memory: Memory, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """query (B, T, H) -> (context (B, T, H), weights (B, T, S) or None).

        Without weights the attention may run a fused kernel (additive on CUDA with Triton).
        """
        return self.attention(
            query, memory.keys, memory.keys, memory.mask, prepared_keys=memory.prepared,
            need_weights=need_weights,
        )  # fmt: skip

    def _run_rnn(self, rnn_input: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """rnn_input (B, T, I) -> (top layer's outputs (B, T, H), state after the last step)."""
        if rnn_input.shape[1] == 1:
            return self._rnn_step(rnn_input, state)
        return self._rnn_sequence(rnn_input, state)

    def _rnn_sequence(self, rnn_input: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """All of rnn_input's steps in one nn.GRU/nn.LSTM call (cuDNN / oneDNN)."""
        output, hx = self.rnn(rnn_input, state.rnn_hx())
        if self.is_lstm:
            return output, replace(state, hidden=hx[0], cell=hx[1])
        return output, replace(state, hidden=hx)

    @contextmanager
    def _teacher_forcing(self, tgt_in: Tensor) -> Iterator[None]:
        """Around a teacher-forced loop over tgt_in (B, T): its steps share one `StepwiseRNN`
        where gathering pays (CPU, gradients wanted); CUDA keeps its fused cell kernels."""
        weight = self.rnn.weight_ih_l0
        if (self.gather_weight_grads and torch.is_grad_enabled() and weight.requires_grad
                and weight.device.type == "cpu"):  # fmt: skip
            self._stepwise = StepwiseRNN(self.rnn, tgt_in.shape[1], tgt_in.shape[0])
        try:
            yield
        finally:
            self._stepwise = None

    def _rnn_step(self, rnn_input: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """One time step through every layer with `self.rnn`'s own weights and dropout.

        Decoding, the Bahdanau decoder and input feeding step once per target token. Called
        with a length-1 sequence, nn.LSTM on CPU (oneDNN) cost 4.5x and nn.GRU 1.1x the
        cell functions below, fwd+bwd at B=16, H=512 (reports/benchmarks/README.md).
        """
        x = rnn_input.squeeze(1)
        if self._stepwise is not None:
            x, hidden, cell = self._stepwise.step(x, state.hidden, state.cell)
            return x.unsqueeze(1), replace(state, hidden=hidden, cell=cell)
        hiddens, cells = [], []
        for layer in range(self.num_layers):
            weights = [getattr(self.rnn, f"{name}_l{layer}") for name in RNN_WEIGHTS]
            if self.is_lstm:
                h, c = torch.lstm_cell(x, (state.hidden[layer], state.cell[layer]), *weights)
                cells.append(c)
            else:
                h = torch.gru_cell(x, state.hidden[layer], *weights)
            hiddens.append(h)
            last = layer == self.num_layers - 1  # nn.GRU/nn.LSTM drop out between layers
            x = h if last else F.dropout(h, self.rnn.dropout, self.training)
        hidden = torch.stack(hiddens)
        cell = torch.stack(cells) if self.is_lstm else None
        return x.unsqueeze(1), replace(state, hidden=hidden, cell=cell)

    def _step(
        self, embedded: Tensor, state: DecoderState, memory: Memory, need_weights: bool = True
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """embedded (B, 1, E) -> (pre-output (B, 1, H), new state, weights (B, 1, S) or None)."""
        raise NotImplementedError

    def step(
        self, prev_tokens: Tensor, state: DecoderState, memory: Memory
    ) -> tuple[Tensor, DecoderState, Tensor]:
        """One decoding step: prev_tokens (B,) -> (logits (B, V), state, weights (B, S))."""
        embedded = self.dropout(self.embedding(prev_tokens.unsqueeze(1)))
        pre, state, weights = self._step(embedded, state, memory)
        return self.generator(self.dropout(pre)).squeeze(1), state, weights.squeeze(1)

    def forward(
        self, tgt_in: Tensor, state: DecoderState, memory: Memory, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: tgt_in (B, T) -> (logits (B, T, V), weights (B, T, S) or None).

        Steps one at a time, then applies the generator to all steps in one matmul.
        """
        embedded = self.dropout(self.embedding(tgt_in))
        pres, weights = [], []
        with self._teacher_forcing(tgt_in):
            for t in range(tgt_in.shape[1]):
                pre, state, w = self._step(embedded[:, t : t + 1], state, memory, need_weights)
                pres.append(pre)
                weights.append(w)
        pre_all = torch.cat(pres, dim=1)
        all_weights = torch.cat(weights, dim=1) if need_weights else None
        return self.generator(self.dropout(pre_all)), all_weights


class BahdanauDecoder(AttentiveDecoder):
    """Attend with s_{i-1}; RNN input [E y_{i-1}; c_i]; readout tanh(W_o [s_i; c_i; E y_{i-1}])."""

    style: DecoderStyle = "bahdanau"

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, attention: Attention,
                 **kwargs) -> None:  # fmt: skip
        super().__init__(vocab_size, emb_dim, hidden_dim, attention, emb_dim + hidden_dim, **kwargs)
        self.readout = nn.Linear(2 * hidden_dim + emb_dim, hidden_dim)

    def _recur(
        self, embedded: Tensor, state: DecoderState, memory: Memory, need_weights: bool = True
    ) -> tuple[Tensor, Tensor, DecoderState, Tensor | None]:
        """embedded (B, 1, E) -> (s_i (B, 1, H), c_i (B, 1, H), new state, weights or None)."""
        query = state.hidden[-1].unsqueeze(1)  # s_{i-1}, (B, 1, H)
        context, weights = self._attend(query, memory, need_weights)
        output, state = self._run_rnn(torch.cat([embedded, context], dim=-1), state)
        return output, context, state, weights

    def _readout(self, output: Tensor, context: Tensor, embedded: Tensor) -> Tensor:
        """s (B, T, H), c (B, T, H), E y (B, T, E) -> pre-output (B, T, H)."""
        return torch.tanh(self.readout(torch.cat([output, context, embedded], dim=-1)))

    def _step(
        self, embedded: Tensor, state: DecoderState, memory: Memory, need_weights: bool = True
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        output, context, state, weights = self._recur(embedded, state, memory, need_weights)
        return self._readout(output, context, embedded), state, weights

    def forward(
        self, tgt_in: Tensor, state: DecoderState, memory: Memory, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """tgt_in (B, T) -> (logits (B, T, V), weights (B, T, S) or None).

        Only the recurrence steps one at a time: the readout is not fed back, so it runs over
        all steps in one matmul, as the generator does (T small matmuls and T weight-gradient
        sums fewer in training).
        """
        embedded = self.dropout(self.embedding(tgt_in))
        outputs, contexts, weights = [], [], []
        with self._teacher_forcing(tgt_in):
            for t in range(tgt_in.shape[1]):
                output, context, state, w = self._recur(
                    embedded[:, t : t + 1], state, memory, need_weights
                )
                outputs.append(output)
                contexts.append(context)
                weights.append(w)
        pre = self._readout(torch.cat(outputs, dim=1), torch.cat(contexts, dim=1), embedded)
        all_weights = torch.cat(weights, dim=1) if need_weights else None
        return self.generator(self.dropout(pre)), all_weights


class LuongDecoder(AttentiveDecoder):
    """RNN first, attend with h_t, h~_t = tanh(W_c [c_t; h_t]); optional input feeding."""

    style: DecoderStyle = "luong"

    def __init__(self, vocab_size: int, emb_dim: int, hidden_dim: int, attention: Attention,
                 input_feeding: bool = False, **kwargs) -> None:  # fmt: skip
        rnn_input = emb_dim + (hidden_dim if input_feeding else 0)
        super().__init__(vocab_size, emb_dim, hidden_dim, attention, rnn_input, **kwargs)
        self.input_feeding = input_feeding
        self.combine = nn.Linear(2 * hidden_dim, hidden_dim, bias=False)  # W_c

    def _initial_feed(self, s0: Tensor) -> Tensor | None:
        return torch.zeros_like(s0).unsqueeze(1) if self.input_feeding else None

    def _attentional(
        self, output: Tensor, memory: Memory, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        context, weights = self._attend(output, memory, need_weights)
        return torch.tanh(self.combine(torch.cat([context, output], dim=-1))), weights

    def _step(
        self, embedded: Tensor, state: DecoderState, memory: Memory, need_weights: bool = True
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        rnn_input = embedded if state.feed is None else torch.cat([embedded, state.feed], dim=-1)
        output, state = self._run_rnn(rnn_input, state)
        pre, weights = self._attentional(output, memory, need_weights)
        if self.input_feeding:
            state = replace(state, feed=pre)
        return pre, state, weights

    def forward(
        self, tgt_in: Tensor, state: DecoderState, memory: Memory, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """tgt_in (B, T) -> (logits (B, T, V), weights (B, T, S) or None); all steps at once
        without input feeding."""
        if self.input_feeding:
            return super().forward(tgt_in, state, memory, need_weights)
        embedded = self.dropout(self.embedding(tgt_in))
        output, _ = self._run_rnn(embedded, state)
        pre, weights = self._attentional(output, memory, need_weights)
        return self.generator(self.dropout(pre)), weights


DECODERS: dict[str, type[AttentiveDecoder]] = {"bahdanau": BahdanauDecoder, "luong": LuongDecoder}
