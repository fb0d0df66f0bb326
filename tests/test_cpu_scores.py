"""The Inductor-fused CPU scores (the additive training path) against the float64 formula."""

from __future__ import annotations

import pytest
import torch

from attnbench.attention import AdditiveAttention, additive
from attnbench.attention.kernels import cpu_additive, cpu_scores
from attnbench.attention.kernels.cpu_scores import fused_additive_scores

F32 = {torch.float32}


def formula(q, k, w):
    """float64 e_ij = sum_a w[h, a] tanh(q_ia + k_ja): (B, H, T_q, T_k)."""
    return torch.einsum("bhija,ha->bhij", torch.tanh(q[:, :, :, None] + k[:, :, None]), w)


def leaves(b, h, t_q, t_k, a, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(b, h, t_q, a), (b, h, t_k, a), (h, a)]
    return [torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_() for s in shapes]


def relative_error(got, want):
    return ((got.double() - want).abs().max() / want.abs().max()).item()


# (B, H, T_q, T_k, a): a decoder step (T_q = 1), one head and several, odd sizes; a = 16
# throughout so the suite compiles each function once per T_q kind
SHAPES = [(3, 1, 1, 13, 16), (2, 3, 7, 29, 16), (4, 2, 33, 5, 16)]


@pytest.mark.slow  # Inductor compiles the forward and the backward: ~5-20 s each, once
@pytest.mark.parametrize("shape", SHAPES)
def test_scores_and_gradients_match_the_float64_formula(shape):
    """Values and the gradients of q, k and w, with a random output gradient, within float32
    accuracy (Eigen's tanh is ~3e-7 absolute; a gradient sums up to T_k * a terms)."""
    q, k, w = leaves(*shape)
    want = formula(q, k, w)
    grad = torch.randn(want.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want_grads = torch.autograd.grad(want, (q, k, w), grad)
    q32, k32, w32 = (x.detach().float().requires_grad_() for x in (q, k, w))
    got = fused_additive_scores(q32, k32, w32)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert relative_error(got, want) < 1e-5
    got_grads = torch.autograd.grad(got, (q32, k32, w32), grad.float())
    for name, g, wg in zip("qkw", got_grads, want_grads, strict=True):
        assert g.shape == wg.shape, name
        assert relative_error(g, wg) < 1e-5, name


@pytest.mark.slow  # the compile, as above (cached from the test before when run together)
def test_the_attention_module_trains_on_it_with_a_padding_mask(monkeypatch):
    """AdditiveAttention with the Inductor backend: the context and every parameter's and
    input's gradient agree with the same module in float64 (the reference formula), padded
    keys included, and the fused scores did run."""
    monkeypatch.setattr(additive, "CPU_KERNEL_BACKEND", "inductor")
    monkeypatch.setattr(additive, "CPU_SCORES_MIN_WORK", 0)
    calls = []

    def counted(q, k, w):
        calls.append(q.shape)
        return fused_additive_scores(q, k, w)

    monkeypatch.setattr(cpu_scores, "fused_additive_scores", counted)
    torch.manual_seed(0)
    att64 = AdditiveAttention(12, 10, attn_dim=32, num_heads=2).double()
    att32 = AdditiveAttention(12, 10, attn_dim=32, num_heads=2)
    att32.load_state_dict(att64.state_dict())
    query, keys = torch.randn(3, 4, 12, dtype=torch.float64), torch.randn(3, 9, 10).double()
    values = torch.randn(3, 9, 6, dtype=torch.float64)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[1, 5:] = True  # row 1 has 5 keys, row 2 one
    mask[2, 1:] = True
    outputs = {}
    for name, att in (("float64", att64), ("float32", att32)):
        dtype = next(att.parameters()).dtype
        inputs = [x.detach().to(dtype).requires_grad_() for x in (query, keys, values)]
        context, _ = att(*inputs, key_padding_mask=mask, need_weights=False)
        context.pow(2).sum().backward()
        outputs[name] = [context, *(x.grad for x in inputs), *(p.grad for p in att.parameters())]
    assert calls == [(3, 2, 4, 16)]  # the float32 module only; float64 keeps the formula
    for got, want in zip(outputs["float32"], outputs["float64"], strict=True):
        assert got.shape == want.shape
        assert relative_error(got, want) < 1e-5


def test_which_calls_take_the_fused_scores(monkeypatch):
    """Float32 on CPU, from CPU_SCORES_MIN_WORK tanh, and only when the backend resolves to
    Inductor: NumPy (the default) keeps training on the formula; "auto" follows whether
    Inductor compiles here."""
    work = additive.CPU_SCORES_MIN_WORK
    monkeypatch.setattr(additive, "CPU_KERNEL_BACKEND", "inductor")
    assert additive.cpu_scores_apply("cpu", F32, work)
    assert not additive.cpu_scores_apply("cpu", F32, work - 1)
    assert not additive.cpu_scores_apply("cpu", {torch.float64}, work)
    assert not additive.cpu_scores_apply("cpu", {torch.float32, torch.float64}, work)
    assert not additive.cpu_scores_apply("cuda", F32, work)
    monkeypatch.setattr(additive, "CPU_KERNEL_BACKEND", None)
    monkeypatch.delenv("ATTNBENCH_CPU_KERNEL_BACKEND", raising=False)
    assert not additive.cpu_scores_apply("cpu", F32, work)
    monkeypatch.setenv("ATTNBENCH_CPU_KERNEL_BACKEND", "auto")
    monkeypatch.setattr(cpu_additive, "inductor_compiles", lambda: False)
    assert not additive.cpu_scores_apply("cpu", F32, work)
    monkeypatch.setattr(cpu_additive, "inductor_compiles", lambda: True)
    assert additive.cpu_scores_apply("cpu", F32, work)


def test_the_default_backend_trains_on_the_formula(monkeypatch):
    """Unset backend: a large float32 training call never reaches the fused scores."""
    monkeypatch.delenv("ATTNBENCH_CPU_KERNEL_BACKEND", raising=False)
    monkeypatch.setattr(additive, "CPU_SCORES_MIN_WORK", 0)

    def fused(*args):
        raise AssertionError("the default backend called the fused scores")

    monkeypatch.setattr(cpu_scores, "fused_additive_scores", fused)
    att = AdditiveAttention(8, 8)
    x = torch.randn(2, 5, 8, requires_grad=True)
    context, _ = att(x, x, x, need_weights=False)
    context.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_refuses_what_it_cannot_compute():
    q, k, w = leaves(1, 1, 2, 3, 4)
    with pytest.raises(ValueError, match=r"float32 CPU tensors, got torch\.float64"):
        fused_additive_scores(q, k, w)
