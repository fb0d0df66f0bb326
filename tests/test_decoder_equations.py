"""The decoders against their papers' equations, written out from the raw weights in float64.

The other model tests compare the decoder's code paths with each other (teacher forcing vs
step by step, weights vs none); these recompute every step independently: the GRU gates as
PyTorch documents them, Bahdanau et al. 2015 (attend with s_{i-1}, RNN input [E y; c], readout
tanh(W_o [s; c; E y])) and Luong et al. 2015 (RNN first, general score h_t^T W_a h_s,
h~ = tanh(W_c [c; h]), input feeding). Padded source positions get no weight.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from attnbench.attention import build_attention
from attnbench.models.decoder import BahdanauDecoder, LuongDecoder

B, S, T, E, H, V = 2, 5, 3, 3, 4, 7


def gru(x: Tensor, h: Tensor, rnn: torch.nn.GRU) -> Tensor:
    """One GRU step for one sentence: x (I,), h (H,) -> (H,), PyTorch's gate order r, z, n."""
    w_ir, w_iz, w_in = rnn.weight_ih_l0.chunk(3)
    w_hr, w_hz, w_hn = rnn.weight_hh_l0.chunk(3)
    b_ir, b_iz, b_in = rnn.bias_ih_l0.chunk(3)
    b_hr, b_hz, b_hn = rnn.bias_hh_l0.chunk(3)
    r = torch.sigmoid(w_ir @ x + b_ir + w_hr @ h + b_hr)
    z = torch.sigmoid(w_iz @ x + b_iz + w_hz @ h + b_hz)
    n = torch.tanh(w_in @ x + b_in + r * (w_hn @ h + b_hn))
    return (1 - z) * n + z * h


def attend(scores: Tensor, annotations: Tensor, padded: Tensor) -> tuple[Tensor, Tensor]:
    """scores (S,) over one sentence's annotations (S, H) -> (context (H,), weights (S,))."""
    weights = torch.zeros_like(scores)
    kept = ~padded
    weights[kept] = torch.softmax(scores[kept], dim=0)
    return weights @ annotations, weights


def inputs(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    annotations = torch.randn(B, S, H, generator=gen, dtype=torch.float64)
    final = torch.randn(B, H, generator=gen, dtype=torch.float64)
    tgt_in = torch.randint(0, V, (B, T), generator=gen)
    padded = torch.zeros(B, S, dtype=torch.bool)
    padded[1, 3:] = True  # the second sentence has 3 source tokens
    return annotations, final, tgt_in, padded


def randomise(module: torch.nn.Module) -> torch.nn.Module:
    """float64 with every parameter drawn at random, biases included (so they are checked)."""
    module = module.double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.7)
    return module


def bahdanau_equations(dec: BahdanauDecoder, annotations, final, tgt_in, padded):
    att = dec.attention
    logits, all_weights = [], []
    for b in range(B):
        s = torch.tanh(dec.bridge.weight @ final[b] + dec.bridge.bias)  # s_0
        for i in range(T):
            ey = dec.embedding.weight[tgt_in[b, i]]
            scores = torch.stack([
                att.v.weight[0] @ torch.tanh(att.query_proj.weight @ s
                                             + att.key_proj.weight @ h + att.key_proj.bias)
                for h in annotations[b]
            ])  # fmt: skip
            c, w = attend(scores, annotations[b], padded[b])
            s = gru(torch.cat([ey, c]), s, dec.rnn)
            pre = torch.tanh(dec.readout.weight @ torch.cat([s, c, ey]) + dec.readout.bias)
            logits.append(dec.generator.weight @ pre + dec.generator.bias)
            all_weights.append(w)
    return torch.stack(logits).view(B, T, V), torch.stack(all_weights).view(B, T, S)


def luong_equations(dec: LuongDecoder, annotations, final, tgt_in, padded):
    w_a = dec.attention.key_proj.weight  # general: score = h_t^T W_a h_s
    logits, all_weights = [], []
    for b in range(B):
        h = torch.tanh(dec.bridge.weight @ final[b] + dec.bridge.bias)
        feed = torch.zeros(H, dtype=torch.float64)
        for t in range(T):
            ey = dec.embedding.weight[tgt_in[b, t]]
            h = gru(torch.cat([ey, feed]) if dec.input_feeding else ey, h, dec.rnn)
            scores = torch.stack([h @ (w_a @ hs) for hs in annotations[b]])
            c, w = attend(scores, annotations[b], padded[b])
            h_tilde = torch.tanh(dec.combine.weight @ torch.cat([c, h]))
            feed = h_tilde
            logits.append(dec.generator.weight @ h_tilde + dec.generator.bias)
            all_weights.append(w)
    return torch.stack(logits).view(B, T, V), torch.stack(all_weights).view(B, T, S)


DECODERS = {
    "bahdanau (additive)": (
        lambda: BahdanauDecoder(V, E, H, build_attention("additive", H, H)),
        bahdanau_equations,
    ),
    "luong (general)": (
        lambda: LuongDecoder(V, E, H, build_attention("general", H, H)),
        luong_equations,
    ),
    "luong (general), input feeding": (
        lambda: LuongDecoder(V, E, H, build_attention("general", H, H), input_feeding=True),
        luong_equations,
    ),
}


@pytest.mark.parametrize("gradients", [False, True], ids=["decoding", "training"])
@pytest.mark.parametrize("name", sorted(DECODERS))
def test_teacher_forcing_follows_the_papers_equations(name, gradients):
    """Training (gradients on: the CPU's gathered-gradient RNN path) and no-grad passes alike."""
    build, equations = DECODERS[name]
    dec = randomise(build())
    annotations, final, tgt_in, padded = inputs(seed=len(name))
    with torch.set_grad_enabled(gradients):
        memory = dec.memory(annotations, padded)
        logits, weights = dec(tgt_in, dec.init_state(final), memory)
    with torch.no_grad():
        want_logits, want_weights = equations(dec, annotations, final, tgt_in, padded)
    torch.testing.assert_close(logits.detach(), want_logits, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(weights.detach(), want_weights, rtol=1e-10, atol=1e-12)
    assert torch.all(weights[1, :, 3:] == 0)  # padding gets no attention
