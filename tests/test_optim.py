"""The shared optimizer constructor: fused Adam where PyTorch has it, same updates as the
default implementation, and a fallback where it has none."""

from __future__ import annotations

import pytest
import torch

from attnbench import optim
from attnbench.bench.model_modes import build_bench_model, random_batch, train_step_fn


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_adam_makes_the_default_adams_updates(dtype):
    torch.manual_seed(0)
    fused_params = [torch.nn.Parameter(torch.randn(7, 5, dtype=dtype)) for _ in range(3)]
    plain_params = [torch.nn.Parameter(p.detach().clone()) for p in fused_params]
    fused, plain = optim.adam(fused_params, lr=1e-2), torch.optim.Adam(plain_params, lr=1e-2)
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    for _ in range(5):
        grads = [torch.randn_like(p) for p in fused_params]
        for params, opt in ((fused_params, fused), (plain_params, plain)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    for a, b in zip(fused_params, plain_params, strict=True):
        assert not torch.equal(a, torch.zeros_like(a))
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_parameters_without_a_fused_kernel_get_the_default_adam(monkeypatch):
    real = torch.optim.Adam

    def no_fused_kernel(params, lr, fused=None):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be ... supported devices")
        return real(params, lr=lr)

    monkeypatch.setattr(optim.torch.optim, "Adam", no_fused_kernel)
    opt = optim.adam([torch.nn.Parameter(torch.zeros(3))], lr=1e-3)
    assert isinstance(opt, real) and not opt.defaults["fused"]


def test_the_benchmarks_training_step_uses_the_trainers_optimizer(monkeypatch):
    made = []
    monkeypatch.setattr(
        "attnbench.bench.model_modes.adam",
        lambda params, lr: made.append(lr) or optim.adam(params, lr),
    )
    model = build_bench_model("dot", hidden=16, vocab=40)
    step = train_step_fn(model, random_batch(2, 5, 4, 40, "cpu"))
    assert made and float(step()) > 0
