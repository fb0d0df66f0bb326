"""Decoders, search and encoder: consistency between training and decoding paths."""

from __future__ import annotations

import itertools

import pytest
import torch

from attnbench.attention import ATTENTION
from attnbench.config import ModelConfig
from attnbench.models import beam_search, build_model, greedy_search, length_penalty
from attnbench.models.search import BOS_ID, EOS_ID

SRC_V, TGT_V = 23, 17
COMBOS = [
    (decoder, attention, rnn, feeding)
    for decoder in ("bahdanau", "luong")
    for attention in sorted(ATTENTION)
    for rnn, feeding in (("gru", False), ("lstm", True))
]


def tiny_model(decoder="luong", attention="additive", rnn="gru", feeding=False, tgt_v=TGT_V):
    torch.manual_seed(0)
    cfg = ModelConfig(
        attention=attention,
        decoder=decoder,
        rnn=rnn,
        input_feeding=feeding,
        emb_dim=8,
        hidden_dim=12,
        dropout=0.0,
    )
    return build_model(cfg, SRC_V, tgt_v).double().eval()


def batch_of_sources():
    src = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0], [11, 3, 0, 0, 0]])
    return src, torch.tensor([5, 3, 2])


@pytest.mark.parametrize(("decoder", "attention", "rnn", "feeding"), COMBOS)
def test_teacher_forcing_equals_step_by_step(decoder, attention, rnn, feeding):
    """The training path (all steps at once for Luong without feeding) and decoding agree."""
    model = tiny_model(decoder, attention, rnn, feeding)
    src, lengths = batch_of_sources()
    tgt_in = torch.tensor([[BOS_ID, 5, 6, 7], [BOS_ID, 8, 9, 0], [BOS_ID, 4, 0, 0]])
    logits, weights = model(src, lengths, tgt_in)
    memory, state = model.encode(src, lengths)
    for t in range(tgt_in.shape[1]):
        step_logits, state, step_w = model.decoder.step(tgt_in[:, t], state, memory)
        torch.testing.assert_close(step_logits, logits[:, t], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(step_w, weights[:, t], rtol=1e-10, atol=1e-10)
    assert torch.all(weights[1, :, 3:] == 0) and torch.all(weights[2, :, 2:] == 0)


@pytest.mark.parametrize(("decoder", "attention", "rnn", "feeding"), COMBOS)
def test_gradients_reach_every_parameter(decoder, attention, rnn, feeding):
    model = tiny_model(decoder, attention, rnn, feeding).train()
    src, lengths = batch_of_sources()
    tgt_in = torch.tensor([[BOS_ID, 5, 6], [BOS_ID, 8, 9], [BOS_ID, 4, 5]])
    logits, _ = model(src, lengths, tgt_in)
    logits.logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        if name.endswith("embedding.weight"):
            continue  # only looked-up rows get gradient
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_padding_does_not_change_the_encoding():
    """Packed sequences: a sentence encodes the same alone and padded inside a batch."""
    model = tiny_model()
    src, lengths = batch_of_sources()
    out, final = model.encoder(src, lengths)
    alone, alone_final = model.encoder(src[2:, :2], lengths[2:])
    torch.testing.assert_close(out[2, :2], alone[0])
    torch.testing.assert_close(final[2], alone_final[0])
    assert torch.all(out[2, 2:] == 0)


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_batch_without_padding_encodes_as_the_packed_rnn_does(rnn, dtype):
    """The encoder skips packing when no sentence is padded (oneDNN's dense RNN on CPU, used
    for float32): same annotations, final states and gradients as the packed recurrence."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    model = tiny_model(rnn=rnn).to(dtype)
    encoder = model.encoder
    src = torch.randint(4, SRC_V, (4, 6))
    lengths = torch.full((4,), 6)
    out, final = encoder(src, lengths)
    assert out.shape == (4, 6, 12) and final.shape == (4, 12)
    (dense_grads,) = torch.autograd.grad(
        (out.sum() + final.square().sum()), [encoder.rnn.weight_hh_l0]
    )

    embedded = encoder.embedding(src)
    packed_out, hidden = encoder.rnn(pack_padded_sequence(embedded, lengths, batch_first=True))
    ref, _ = pad_packed_sequence(packed_out, batch_first=True)
    h = hidden[0] if rnn == "lstm" else hidden
    ref_final = torch.cat([h[-2], h[-1]], dim=-1)
    (ref_grads,) = torch.autograd.grad(
        (ref.sum() + ref_final.square().sum()), [encoder.rnn.weight_hh_l0]
    )
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(final, ref_final, **tol)
    torch.testing.assert_close(dense_grads, ref_grads, **tol)


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_a_decoder_step_through_the_cell_functions_equals_the_rnn_module(rnn, layers):
    """One-token steps go through torch.{gru,lstm}_cell with nn.GRU/nn.LSTM's weights (faster
    on CPU): the same outputs, states and gradients as the module, every layer."""
    from attnbench.models.decoder import DecoderState

    torch.manual_seed(0)
    cfg = ModelConfig(rnn=rnn, dec_layers=layers, emb_dim=8, hidden_dim=12, dropout=0.3)
    decoder = build_model(cfg, SRC_V, TGT_V).decoder.double().eval()
    x = torch.randn(3, 1, decoder.rnn.input_size, dtype=torch.float64)
    h = torch.randn(layers, 3, 12, dtype=torch.float64)
    state = DecoderState(h, torch.randn_like(h) if rnn == "lstm" else None)

    out, new = decoder._rnn_step(x, state)
    ref_out, ref_hx = decoder.rnn(x, state.rnn_hx())
    ref_h, ref_c = ref_hx if rnn == "lstm" else (ref_hx, None)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(new.hidden, ref_h, rtol=1e-12, atol=1e-12)
    if rnn == "lstm":
        torch.testing.assert_close(new.cell, ref_c, rtol=1e-12, atol=1e-12)
    params = list(decoder.rnn.parameters())
    grads = torch.autograd.grad(out.sum() + new.hidden.square().sum(), params)
    ref_grads = torch.autograd.grad(ref_out.sum() + ref_h.square().sum(), params)
    for g, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12)
    assert decoder._run_rnn(x, state)[0].equal(out)  # a one-token input takes this path
    if layers > 1:  # in training, dropout between layers as the module applies it
        decoder.train()
        assert not decoder._rnn_step(x, state)[0].allclose(out)


@pytest.mark.parametrize("decoder", ["bahdanau", "luong"])
def test_batched_greedy_equals_one_by_one(decoder):
    model = tiny_model(decoder)
    src, lengths = batch_of_sources()
    batched = greedy_search(model, src, lengths, max_len_a=0, max_len_b=6)
    for i in range(3):
        n = int(lengths[i])
        alone = greedy_search(model, src[i : i + 1, :n], lengths[i : i + 1], 0, 6)[0]
        assert batched[i].tokens == alone.tokens
        torch.testing.assert_close(batched[i].weights, alone.weights)
        assert batched[i].weights.shape[1] == n


def test_beam_of_one_is_greedy():
    model = tiny_model("bahdanau", "general")
    src, lengths = batch_of_sources()
    greedy = greedy_search(model, src, lengths, 0, 6)
    beam = beam_search(model, src, lengths, beam_size=1, max_len_a=0, max_len_b=6)
    assert [h.tokens for h in greedy] == [h.tokens for h in beam]


@torch.no_grad()
def sequence_logprob(model, src, length, tokens, with_eos: bool) -> float:
    memory, state = model.encode(src, length)
    total, prev = 0.0, BOS_ID
    for tok in [*tokens, EOS_ID] if with_eos else tokens:
        logits, state, _ = model.decoder.step(torch.tensor([prev]), state, memory)
        total += float(torch.log_softmax(logits, -1)[0, tok])
        prev = tok
    return total


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_finds_the_exact_best_sequence(alpha):
    """With beam >= every prefix, beam search is exhaustive: compare with brute force."""
    vocab, cap = 6, 3
    model = tiny_model("luong", "dot", tgt_v=vocab)
    src, lengths = batch_of_sources()
    src, lengths = src[1:2, :3], lengths[1:2]
    non_eos = [t for t in range(vocab) if t != EOS_ID]
    best = -float("inf")
    for n in range(cap + 1):
        for seq in itertools.product(non_eos, repeat=n):
            finished = n < cap
            lp = length_penalty(n + 1 if finished else n, alpha)
            best = max(best, sequence_logprob(model, src, lengths, list(seq), finished) / lp)
    hyp = beam_search(model, src, lengths, beam_size=125, alpha=alpha, max_len_a=0, max_len_b=cap)
    assert hyp[0].score == pytest.approx(best, rel=1e-6)  # search scores in float32


def test_beam_search_returns_attention_per_step():
    model = tiny_model()
    src, lengths = batch_of_sources()
    hyps = beam_search(model, src, lengths, beam_size=3, max_len_a=0, max_len_b=5)
    for hyp, n in zip(hyps, lengths.tolist(), strict=True):
        assert hyp.weights.shape[1] == n
        assert hyp.weights.shape[0] in (len(hyp.tokens), len(hyp.tokens) + 1)
        torch.testing.assert_close(hyp.weights.sum(-1), torch.ones(hyp.weights.shape[0]))


@pytest.mark.parametrize(("decoder", "attention", "rnn", "feeding"), COMBOS)
def test_without_weights_the_logits_are_the_same(decoder, attention, rnn, feeding, monkeypatch):
    """need_weights=False (training) may take a fused path; it must compute the same model.
    Under no_grad additive attention runs the CPU kernel (at any size here), so both paths are
    compared."""
    from attnbench.attention import additive

    monkeypatch.setattr(additive, "CPU_KERNEL_MIN_WORK", 0)
    kernel, calls = additive._cpu_kernel(), []
    monkeypatch.setattr(additive, "_cpu_kernel", lambda: lambda *a: calls.append(1) or kernel(*a))
    model = tiny_model(decoder, attention, rnn, feeding)
    src, lengths = batch_of_sources()
    tgt_in = torch.tensor([[BOS_ID, 5, 6, 7], [BOS_ID, 8, 9, 0], [BOS_ID, 4, 0, 0]])
    logits, weights = model(src, lengths, tgt_in)
    assert weights is not None
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            fast, none = model(src, lengths, tgt_in, need_weights=False)
        assert none is None
        torch.testing.assert_close(fast, logits, rtol=1e-10, atol=1e-10)
    assert bool(calls) == (attention == "additive")  # only under no_grad, only additive


@pytest.mark.parametrize("decoder", ["bahdanau", "luong"])
def test_the_training_loss_asks_the_attention_for_no_weights(decoder):
    """So that on CUDA the fused Triton kernel runs in training, not only in benchmarks."""
    from attnbench.data.batching import Batch
    from attnbench.train import _loss_sum

    model = tiny_model(decoder).train()
    asked: list[bool] = []
    model.decoder.attention.register_forward_pre_hook(
        lambda module, args, kwargs: asked.append(kwargs.get("need_weights", True)),
        with_kwargs=True,
    )
    src, lengths = batch_of_sources()
    tgt_in = torch.tensor([[BOS_ID, 5, 6], [BOS_ID, 8, 9], [BOS_ID, 4, 5]])
    tgt_out = torch.tensor([[5, 6, EOS_ID], [8, 9, EOS_ID], [4, 5, EOS_ID]])
    _loss_sum(model, Batch(src, lengths, tgt_in, tgt_out, [0, 1, 2]), 0.0).backward()
    assert asked and not any(asked)
