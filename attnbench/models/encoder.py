"""Bidirectional RNN encoder over packed sequences (padding never enters the recurrence)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RNNType = Literal["gru", "lstm"]
RNN_CLASSES: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM}


class Encoder(nn.Module):
    """Embedding + bidirectional GRU/LSTM.

    Each direction has `hidden_dim // 2` units so the annotations h_j have `hidden_dim`
    features, equal to the decoder state: that keeps `dot` attention (which needs equal
    query and key sizes) usable with every decoder.
    """

    def __init__(
        self,
        vocab_size: int,
        emb_dim: int,
        hidden_dim: int,
        num_layers: int = 1,
        rnn: RNNType = "gru",
        dropout: float = 0.0,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even for a bidirectional encoder: {hidden_dim}")
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.rnn = RNN_CLASSES[rnn](
            emb_dim,
            hidden_dim // 2,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """src (B, S) ids, src_lengths (B,) -> (outputs (B, S, H), final (B, H)).

        `final` joins the last forward and first backward states of the top layer: the
        summary a decoder's initial state is computed from.
        """
        embedded = self.dropout(self.embedding(src))
        lengths = src_lengths.cpu()
        if bool((lengths == src.shape[1]).all()):
            # No padding (most batches: make_batches sorts by source length), so packing
            # changes nothing but the kernel: on CPU a dense input takes oneDNN's RNN, which
            # ran a bi-GRU's forward + backward 1.3-1.9x faster than the packed loop (LSTM
            # 1.0-1.1x) at B=16-200, S=13-80 (reports/benchmarks/cpu/training_step_changes.py).
            outputs, hidden = self.rnn(embedded)
        else:
            packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
            packed_out, hidden = self.rnn(packed)
            outputs, _ = pad_packed_sequence(
                packed_out, batch_first=True, total_length=src.shape[1]
            )
        if isinstance(hidden, tuple):  # LSTM: (h, c); the summary uses h
            hidden = hidden[0]
        top = hidden.view(self.num_layers, 2, src.shape[0], self.hidden_dim // 2)[-1]
        final = torch.cat([top[0], top[1]], dim=-1)
        return self.dropout(outputs), final
