"""Teacher-forced steps with gathered RNN weight gradients (`attnbench.models.stepwise_rnn`)
against the module's own cell functions: same values, same gradients, in float64."""

from __future__ import annotations

import copy

import pytest
import torch

from attnbench.config import ModelConfig
from attnbench.models import build_model
from attnbench.models.search import BOS_ID
from attnbench.models.stepwise_rnn import StepwiseRNN, gru_update, lstm_update

SRC_V, TGT_V = 23, 17
STEPWISE = [  # the decoders that step one target token at a time in training
    ("bahdanau", "gru", False, 1),
    ("bahdanau", "lstm", False, 2),
    ("luong", "lstm", True, 1),
    ("luong", "gru", True, 2),
]


def model_pair(decoder, rnn, feeding, layers, dropout=0.3):
    """The same model twice (train mode, float64): gathering on, and off."""
    torch.manual_seed(0)
    cfg = ModelConfig(attention="additive", decoder=decoder, rnn=rnn, input_feeding=feeding,
                      dec_layers=layers, emb_dim=8, hidden_dim=12, dropout=dropout)  # fmt: skip
    gathered = build_model(cfg, SRC_V, TGT_V).double().train()
    plain = copy.deepcopy(gathered)
    plain.decoder.gather_weight_grads = False
    return gathered, plain


def loss_and_grads(model, seed=1):
    src = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0], [11, 3, 0, 0, 0]])
    lengths = torch.tensor([5, 3, 2])
    tgt_in = torch.tensor([[BOS_ID, 5, 6, 7, 9], [BOS_ID, 8, 9, 0, 0], [BOS_ID, 4, 0, 0, 0]])
    torch.manual_seed(seed)  # the same dropout masks for both models
    logits, _ = model(src, lengths, tgt_in)
    loss = logits.log_softmax(-1).square().mean()
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    return loss.detach(), dict(zip([n for n, _ in model.named_parameters()], grads, strict=True))


@pytest.mark.parametrize(("decoder", "rnn", "feeding", "layers"), STEPWISE)
def test_gathered_gradients_equal_the_cell_functions(decoder, rnn, feeding, layers, monkeypatch):
    """Whole model, dropout on (same masks), padding in the batch: loss and every parameter's
    gradient as with torch.{gru,lstm}_cell, and the gathered path did run."""
    gathered, plain = model_pair(decoder, rnn, feeding, layers)
    calls = []
    original = StepwiseRNN.step

    def counting(self, *args):
        calls.append(1)
        return original(self, *args)

    monkeypatch.setattr(StepwiseRNN, "step", counting)
    loss, grads = loss_and_grads(gathered)
    monkeypatch.undo()
    ref_loss, ref_grads = loss_and_grads(plain)
    assert len(calls) == 5  # one per target step
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        assert grad is not None and ref_grads[name] is not None, name
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-10, atol=1e-12, msg=name)
    rnn_weights = [n for n in grads if n.startswith("decoder.rnn.weight")]
    assert len(rnn_weights) == 2 * layers and all(grads[n].abs().sum() > 0 for n in rnn_weights)


def test_gathering_only_where_it_pays(monkeypatch):
    """Not without gradients (validation, decoding), not when switched off: the module's cell
    functions then run, and no StepwiseRNN is left behind after a pass."""
    gathered, _ = model_pair("bahdanau", "gru", False, 1, dropout=0.0)
    built = []
    original = StepwiseRNN.__init__

    def recording(self, *args):
        built.append(1)
        original(self, *args)

    monkeypatch.setattr(StepwiseRNN, "__init__", recording)
    with torch.no_grad():
        gathered(torch.tensor([[5, 3]]), torch.tensor([2]), torch.tensor([[BOS_ID, 5]]))
    assert built == []
    loss_and_grads(gathered)
    assert built == [1] and gathered.decoder._stepwise is None
    gathered.decoder.gather_weight_grads = False
    loss_and_grads(gathered)
    assert built == [1]


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_the_cell_updates_are_torchs_cells(rnn):
    """gru_update / lstm_update on the same gate products as torch.{gru,lstm}_cell."""
    torch.manual_seed(0)
    n = 3 if rnn == "gru" else 4
    x, h, c = (torch.randn(4, 5, dtype=torch.float64) for _ in range(3))
    w_ih, w_hh = (torch.randn(n * 5, 5, dtype=torch.float64) for _ in range(2))
    b_ih, b_hh = (torch.randn(n * 5, dtype=torch.float64) for _ in range(2))
    gates_x, gates_h = x @ w_ih.t() + b_ih, h @ w_hh.t() + b_hh
    if rnn == "gru":
        ref = torch.gru_cell(x, h, w_ih, w_hh, b_ih, b_hh)
        torch.testing.assert_close(gru_update(gates_x, gates_h, h), ref, rtol=1e-12, atol=1e-12)
    else:
        ref_h, ref_c = torch.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
        new_h, new_c = lstm_update(gates_x + gates_h, c)
        torch.testing.assert_close(new_h, ref_h, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(new_c, ref_c, rtol=1e-12, atol=1e-12)
