"""Side-by-side timings behind the training-step changes in ../README.md.

    python reports/benchmarks/cpu/training_step_changes.py [--repeats 11] [--parts 1,2,3,4]
        [--cells 16x64x64,16x80x20] [--batch 16 --src-len 80 --tgt-len 20 --hidden 512]

1. The encoder's bidirectional RNN, forward + backward, on a batch without padding: packed
   (what `Encoder` did for every batch) vs dense (what it does now when no sentence is padded).
2. A training step of the benchmark's hidden-512 Bahdanau model: the decoder stepping the
   readout with the recurrence (the base class's loop, as before) vs `BahdanauDecoder.forward`
   (the readout over all target steps at once). Same weights, same batch.
3. A training step whose decoder steps its RNN one token at a time (Bahdanau with a GRU, the
   benchmark's model; Luong with an LSTM and input feeding, the `multi30k` preset's): every
   step through the nn.GRU/nn.LSTM module (as before) vs through torch.{gru,lstm}_cell with
   the module's weights (`AttentiveDecoder._rnn_step`, now). Same weights, same batch.
4. The additive score's v_a product as a matmul broadcast over (B, H, T_q) (as before) vs one
   matrix-vector product over all rows (`AdditiveAttention._v_dot`, now): a decoder step's
   attention call alone (one query, keys prepared once), then training steps of the
   benchmark's key-projection model (hidden 512), keys once and per step, at `--cells`.
Parts 2-4 take the model's size from the shape options (parts 2 and 3 also the batch).
(Fused vs default Adam: `key_projection_breakdown.py`.) Medians over interleaved repeats,
the order reversed every other round.
"""

from __future__ import annotations

import argparse
import copy
import types
from collections.abc import Callable

import torch
from step_shape import StepShape, add_shape_arguments, shape_from
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnbench.attention import AdditiveAttention
from attnbench.bench.full_model import KEY_PROJECTION_CELLS
from attnbench.bench.model_modes import (
    build_bench_model,
    median_ms,
    per_step_copy,
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


def batched_v_dot(self: AdditiveAttention, hidden: torch.Tensor) -> torch.Tensor:
    """The score's v_a product as it was: a (H, 1, a, 1) weight broadcast over (B, H, T_q)."""
    v = self.v.weight.view(self.num_heads, 1, self.attn_dim // self.num_heads, 1)
    return torch.matmul(hidden, v).squeeze(-1)


def with_batched_v_dot(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` (same weights) whose additive attention uses `batched_v_dot`."""
    old = copy.deepcopy(model)
    for module in old.modules():
        if isinstance(module, AdditiveAttention):
            module._v_dot = types.MethodType(batched_v_dot, module)
    return old


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--parts", type=parts_arg, default="1,2,3,4",
                        help="which of the parts above to run")  # fmt: skip
    default_cells = ",".join("x".join(map(str, cell)) for cell in KEY_PROJECTION_CELLS)
    parser.add_argument("--cells", type=cells_arg, default=default_cells,
                        help="part 4's BxSxT shapes")  # fmt: skip
    add_shape_arguments(parser)
    args = parser.parse_args()
    parts, shape = args.parts, shape_from(args)
    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} threads, median of {args.repeats}\n")
    if 1 in parts:
        rnn_table(args.repeats)
    data = random_batch(shape.batch, shape.src_len, shape.tgt_len, shape.vocab, "cpu")
    if 2 in parts:
        readout_table(data, shape, args.repeats)
    if 3 in parts:
        cell_table(data, shape, args.repeats)
    if 4 in parts:
        v_dot_table(args.cells, shape, args.repeats)


def parts_arg(text: str) -> set[int]:
    """'1,4' -> {1, 4}; argparse turns the ValueError into a usage line and exit code 2."""
    parts = {int(p) for p in text.split(",")}
    if not parts <= {1, 2, 3, 4}:
        raise ValueError(text)
    return parts


def cells_arg(text: str) -> list[tuple[int, int, int]]:
    """'16x64x64,16x80x20' -> [(16, 64, 64), (16, 80, 20)], each a positive BxSxT."""
    cells = [tuple(int(n) for n in cell.split("x")) for cell in text.split(",")]
    if any(len(cell) != 3 or min(cell) <= 0 for cell in cells):
        raise ValueError(text)
    return cells


def rnn_table(repeats: int) -> None:
    print("| bi-RNN, fwd+bwd | packed ms | dense ms | speed-up |\n|---|---|---|---|")
    for shape in RNN_SHAPES:
        ms = median_ms(rnn_fns(*shape), repeats)
        b, s, e, u, kind = shape
        print(f"| {kind} B={b} S={s} E={e} {u}x2 | {ms['packed']:.1f} | {ms['dense']:.1f} "
              f"| {ms['packed'] / ms['dense']:.2f}x |")  # fmt: skip


def readout_table(data: tuple, shape: StepShape, repeats: int) -> None:
    new = build_bench_model("additive", shape.hidden, shape.vocab).train()
    old = copy.deepcopy(new)
    old.decoder.forward = types.MethodType(AttentiveDecoder.forward, old.decoder)
    ms = median_ms({"readout per step": train_step_fn(old, data),
                      "readout once": train_step_fn(new, data)}, repeats)  # fmt: skip
    print(f"\n| training step, {shape} | ms |\n|---|---|")
    for name, value in ms.items():
        print(f"| {name} | {value:.1f} |")
    print(f"\nreadout once: {ms['readout per step'] / ms['readout once']:.3f}x")


def cell_table(data: tuple, shape: StepShape, repeats: int) -> None:
    print(f"\n| training step, {shape} | RNN module per step ms | cell ms "
          "| speed-up |\n|---|---|---|---|")  # fmt: skip
    for rnn, decoder, feeding in (("gru", "bahdanau", False), ("lstm", "luong", True)):
        cfg = ModelConfig(attention="additive", decoder=decoder, rnn=rnn, input_feeding=feeding,
                          emb_dim=shape.hidden // 2, hidden_dim=shape.hidden,
                          dropout=0.0)  # fmt: skip
        torch.manual_seed(0)
        cells = build_model(cfg, shape.vocab, shape.vocab).train()
        module = copy.deepcopy(cells)
        module.decoder._run_rnn = module.decoder._rnn_sequence  # every step through nn.GRU/LSTM
        ms = median_ms({"module": train_step_fn(module, data),
                          "cell": train_step_fn(cells, data)}, repeats)  # fmt: skip
        name = f"{decoder}, {rnn.upper()}{', input feeding' if feeding else ''}"
        print(f"| {name} | {ms['module']:.1f} | {ms['cell']:.1f} | "
              f"{ms['module'] / ms['cell']:.2f}x |")  # fmt: skip


def attention_step_fn(attention: AdditiveAttention, batch: int, src: int) -> Callable:
    """One decoder step's attention call (one query, prepared keys), forward + backward."""
    gen = torch.Generator().manual_seed(0)
    query = torch.randn(batch, 1, attention.query_dim, generator=gen, requires_grad=True)
    keys = torch.randn(batch, src, attention.key_dim, generator=gen, requires_grad=True)
    with torch.no_grad():  # the decoder projects the keys once per batch, not per step
        prepared = attention.prepare_keys(keys).requires_grad_()

    def step() -> None:
        context, _ = attention(query, keys, keys, prepared_keys=prepared)
        context.sum().backward()

    return step


def v_dot_table(cells: list[tuple[int, int, int]], shape: StepShape, repeats: int) -> None:
    """Both sides of the key-projection comparison, at its cells, with either v_a product."""
    print(f"\n| attention call, one query, a={shape.hidden}, fwd+bwd | batched v ms "
          "| one product ms | speed-up |\n|---|---|---|---|")  # fmt: skip
    for batch, src, _ in cells:
        attention = AdditiveAttention(shape.hidden, shape.hidden)
        ms = median_ms({"batched": attention_step_fn(with_batched_v_dot(attention), batch, src),
                        "one": attention_step_fn(attention, batch, src)}, repeats)  # fmt: skip
        print(f"| B={batch} S={src} | {ms['batched']:.2f} | {ms['one']:.2f} | "
              f"{ms['batched'] / ms['one']:.2f}x |")  # fmt: skip
    print(f"\n| training step, additive, hidden {shape.hidden} | keys | batched v ms "
          "| one product ms | speed-up |\n|---|---|---|---|---|")  # fmt: skip
    for batch, src, tgt in cells:
        data = random_batch(batch, src, tgt, shape.vocab, "cpu")
        once = build_bench_model("additive", shape.hidden, shape.vocab).train()
        for keys, model in (("once", once), ("per step", per_step_copy(once))):
            ms = median_ms({"batched": train_step_fn(with_batched_v_dot(model), data),
                            "one": train_step_fn(model, data)}, repeats)  # fmt: skip
            print(f"| B={batch} S={src} T={tgt} | {keys} | {ms['batched']:.1f} | "
                  f"{ms['one']:.1f} | {ms['batched'] / ms['one']:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
