"""Side-by-side timings behind the training-step changes in ../README.md.

    python reports/benchmarks/cpu/training_step_changes.py [--repeats 11]

1. The encoder's bidirectional RNN, forward + backward, on a batch without padding: packed
   (what `Encoder` did for every batch) vs dense (what it does now when no sentence is padded).
2. A training step of the benchmark's hidden-512 Bahdanau model: the decoder stepping the
   readout with the recurrence (the base class's loop, as before) vs `BahdanauDecoder.forward`
   (the readout over all target steps at once). Same weights, same batch.
3. A training step whose decoder steps its RNN one token at a time (Bahdanau with a GRU, the
   benchmark's model; Luong with an LSTM and input feeding, the `multi30k` preset's): every
   step through the nn.GRU/nn.LSTM module (as before) vs through torch.{gru,lstm}_cell with
   the module's weights (`AttentiveDecoder._rnn_step`, now). Same weights, same batch.
(Fused vs default Adam: `key_projection_breakdown.py`.) Medians over interleaved repeats,
the order reversed every other round.
"""

from __future__ import annotations

import argparse
import copy
import types
from collections.abc import Callable

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnbench.bench.model_modes import (
    build_bench_model,
    median_ms,
    random_batch,
    train_step_fn,
)
from attnbench.config import ModelConfig
from attnbench.models import build_model
from attnbench.models.decoder import AttentiveDecoder

#: (batch, source length, embedding, units per direction, RNN)
RNN_SHAPES = [(16, 80, 256, 256, "GRU"), (64, 30, 512, 256, "GRU"), (200, 13, 256, 128, "GRU"),
              (200, 13, 256, 128, "LSTM"), (16, 80, 256, 256, "LSTM")]  # fmt: skip


def rnn_fns(batch: int, length: int, emb: int, units: int, kind: str) -> dict[str, Callable]:
    rnn = getattr(torch.nn, kind)(emb, units, batch_first=True, bidirectional=True)
    x = torch.randn(batch, length, emb, requires_grad=True)
    lengths = torch.full((batch,), length)

    def backward(out: torch.Tensor, hidden) -> None:
        h = hidden[0] if isinstance(hidden, tuple) else hidden
        (out.sum() + h.sum()).backward()

    def packed() -> None:
        out, hidden = rnn(pack_padded_sequence(x, lengths, batch_first=True))
        backward(pad_packed_sequence(out, batch_first=True)[0], hidden)

    def dense() -> None:
        backward(*rnn(x))

    return {"packed": packed, "dense": dense}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} threads, median of {args.repeats}\n")
    print("| bi-RNN, fwd+bwd | packed ms | dense ms | speed-up |\n|---|---|---|---|")
    for shape in RNN_SHAPES:
        ms = median_ms(rnn_fns(*shape), args.repeats)
        b, s, e, u, kind = shape
        print(f"| {kind} B={b} S={s} E={e} {u}x2 | {ms['packed']:.1f} | {ms['dense']:.1f} "
              f"| {ms['packed'] / ms['dense']:.2f}x |")  # fmt: skip

    new = build_bench_model("additive", 512, 8000).train()
    old = copy.deepcopy(new)
    old.decoder.forward = types.MethodType(AttentiveDecoder.forward, old.decoder)
    data = random_batch(16, 80, 20, 8000, "cpu")
    ms = median_ms({"readout per step": train_step_fn(old, data),
                      "readout once": train_step_fn(new, data)}, args.repeats)  # fmt: skip
    print("\n| training step, B=16 S=80 T=20 hidden 512 | ms |\n|---|---|")
    for name, value in ms.items():
        print(f"| {name} | {value:.1f} |")
    print(f"\nreadout once: {ms['readout per step'] / ms['readout once']:.3f}x")

    print("\n| training step, B=16 S=80 T=20 hidden 512 | RNN module per step ms | cell ms "
          "| speed-up |\n|---|---|---|---|")  # fmt: skip
    for rnn, decoder, feeding in (("gru", "bahdanau", False), ("lstm", "luong", True)):
        cfg = ModelConfig(attention="additive", decoder=decoder, rnn=rnn, input_feeding=feeding,
                          emb_dim=256, hidden_dim=512, dropout=0.0)  # fmt: skip
        torch.manual_seed(0)
        cells = build_model(cfg, 8000, 8000).train()
        module = copy.deepcopy(cells)
        module.decoder._run_rnn = module.decoder._rnn_sequence  # every step through nn.GRU/LSTM
        ms = median_ms({"module": train_step_fn(module, data),
                          "cell": train_step_fn(cells, data)}, args.repeats)  # fmt: skip
        name = f"{decoder}, {rnn.upper()}{', input feeding' if feeding else ''}"
        print(f"| {name} | {ms['module']:.1f} | {ms['cell']:.1f} | "
              f"{ms['module'] / ms['cell']:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
