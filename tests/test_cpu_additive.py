"""The CPU fast path computes Bahdanau's formula exactly as the float64 reference does."""

from __future__ import annotations

import pytest
import torch

from attnbench.attention import AdditiveAttention
from attnbench.attention.kernels import cpu_additive
from attnbench.attention.kernels.cpu_additive import additive_attention_cpu, additive_context_cpu


def reference(qp, kp, w, values, mask):
    """float64 formula: softmax_j(sum_a w[h,a] tanh(qp_ia + kp_ja)) @ values, padded -> 0."""
    qp, kp, w, values = (x.double() for x in (qp, kp, w, values))
    scores = torch.einsum("bhija,ha->bhij", torch.tanh(qp[:, :, :, None] + kp[:, :, None]), w)
    if mask is not None:
        scores = scores.masked_fill(mask[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # all-padding rows: NaN -> 0
    return weights @ values


def inputs(b, h, t_q, t_k, a, dv, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    qp = torch.randn(b, h, t_q, a, generator=gen, dtype=torch.float64)
    kp = torch.randn(b, h, t_k, a, generator=gen, dtype=torch.float64)
    w = torch.randn(h, a, generator=gen, dtype=torch.float64)
    values = torch.randn(b, h, t_k, dv, generator=gen, dtype=torch.float64)
    mask = torch.rand(b, t_k, generator=gen) < 0.3
    mask[0] = True  # batch row 0: every key is padding
    return qp, kp, w, values, mask


SHAPES = [  # (B, H, T_q, T_k, a, dv): odd sizes, one head and several, blocks that don't divide
    (2, 1, 1, 1, 1, 1),
    (3, 1, 7, 13, 5, 3),
    (2, 3, 67, 29, 9, 4),
    (2, 2, 130, 301, 64, 8),
    (3, 4, 5, 1000, 17, 2),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masked", [True, False])
def test_float64_equals_formula(shape, masked):
    qp, kp, w, values, mask = inputs(*shape)
    mask = mask if masked else None
    with torch.no_grad():
        got = additive_attention_cpu(qp, kp, w, values, mask)
    want = reference(qp, kp, w, values, mask)
    assert got.dtype == torch.float64 and got.shape == want.shape
    scale = want.abs().max().clamp_min(1.0)
    assert ((got - want).abs().max() / scale).item() < 1e-10
    if masked:
        assert torch.equal(got[0], torch.zeros_like(got[0]))  # all-padding row: zero context


@pytest.mark.parametrize("shape", SHAPES)
def test_float32_close_to_float64(shape):
    """float32 carries ~6e-8 relative error per op; a score sums a terms, the context T_k.

    An error of d in the scores moves the weights by ~d relative, so the context error is
    about (a + T_k) * 6e-8 * |w|*|values| scale; 1e-4 bounds that for these sizes with margin.
    """
    qp, kp, w, values, mask = inputs(*shape, seed=1)
    args = (qp.float(), kp.float(), w.float(), values.float(), mask)
    with torch.no_grad():
        got = additive_attention_cpu(*args, backend="numpy")  # Inductor's: the slow test below
    want = reference(qp, kp, w, values, mask)
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-4)


def test_threads_and_tiles_do_not_change_the_result():
    qp, kp, w, values, mask = inputs(2, 2, 150, 333, 12, 5)
    with torch.no_grad():
        one = additive_attention_cpu(qp, kp, w, values, mask, num_threads=1)
        many = additive_attention_cpu(qp, kp, w, values, mask, num_threads=3, tile_elements=100)
    assert torch.allclose(one, many, rtol=0, atol=1e-13)


def test_matches_additive_attention_module():
    torch.manual_seed(0)
    att = AdditiveAttention(12, 10, attn_dim=8, num_heads=2).double().eval()
    q, k = torch.randn(3, 9, 12).double(), torch.randn(3, 11, 10).double()
    vals = torch.randn(3, 11, 6).double()
    mask = torch.zeros(3, 11, dtype=torch.bool)
    mask[1, 7:] = True
    mask[2] = True
    with torch.no_grad():
        want, _ = att(q, k, vals, mask)
        got = additive_context_cpu(att, q, k, vals, mask)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)


def test_refuses_autograd_and_bad_shapes():
    qp, kp, w, values, _ = inputs(1, 1, 3, 4, 2, 2)
    with pytest.raises(RuntimeError, match="inference only"):
        additive_attention_cpu(qp.requires_grad_(), kp, w, values)
    with torch.no_grad():
        additive_attention_cpu(qp, kp, w, values)  # fine without autograd
        with pytest.raises(ValueError, match="v_weight"):
            additive_attention_cpu(qp, kp, w[:, :1], values)
        with pytest.raises(ValueError, match="key_padding_mask"):
            additive_attention_cpu(qp, kp, w, values, torch.zeros(1, 5, dtype=torch.bool))


@pytest.mark.slow  # Inductor compiles the scores loop: ~20 s on first use, ~3 s cached
def test_inductor_backend_close_to_float64(monkeypatch):
    """Eigen's rational tanh (~3e-7 absolute) in place of np.tanh: the float32 bound above
    holds. Blocks of query rows are split (INDUCTOR_SCORES shrunk), padded keys dropped, and
    an all-padding row gives a zero context, as on the NumPy backend."""
    monkeypatch.setattr(cpu_additive, "INDUCTOR_SCORES", 500)
    compiled, blocks = cpu_additive.compiled_scores(), []

    def counted(qp, kp, w):
        blocks.append(qp.shape[0])
        return compiled(qp, kp, w)

    monkeypatch.setattr(cpu_additive, "compiled_scores", lambda: counted)
    assert cpu_additive.resolve_backend("auto", torch.float32) == "inductor"  # it compiles here
    assert cpu_additive.resolve_backend("auto", torch.float64) == "numpy"
    for shape in [(3, 1, 7, 13, 5, 3), (2, 2, 130, 301, 64, 8)]:
        blocks.clear()
        qp, kp, w, values, mask = inputs(*shape, seed=2)
        with torch.no_grad():
            got = additive_attention_cpu(
                qp.float(), kp.float(), w.float(), values.float(), mask, backend="inductor"
            )
        want = reference(qp, kp, w, values, mask)
        assert got.dtype == torch.float32 and got.shape == want.shape
        assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-4)
        assert torch.equal(got[0], torch.zeros_like(got[0]))
        # the compiled scores ran, every query row once per head of each row with a key
        b, h, t_q = shape[:3]
        assert sum(blocks) == (b - 1) * h * t_q
    assert len(blocks) > 2 * 2  # the 130 queries were split into blocks


def test_inductor_backend_refuses_float64_and_unknown_backends():
    qp, kp, w, values, _ = inputs(1, 1, 3, 4, 2, 2)
    with torch.no_grad():
        with pytest.raises(ValueError, match="backend='inductor' computes a float32 tanh"):
            additive_attention_cpu(qp, kp, w, values, backend="inductor")
        with pytest.raises(ValueError, match="backend must be one of auto, numpy, inductor"):
            additive_attention_cpu(qp, kp, w, values, backend="eigen")  # type: ignore[arg-type]


def test_auto_backend_falls_back_to_numpy_when_inductor_cannot_compile(monkeypatch):
    """No C++ compiler: one warning, then the NumPy backend, the same result; float64 never
    tries Inductor."""

    def no_compiler():
        raise RuntimeError("no C++ compiler found\nlong compiler log")

    monkeypatch.setattr(cpu_additive, "compiled_scores", lambda: no_compiler())
    cpu_additive.inductor_compiles.cache_clear()
    try:
        qp, kp, w, values, mask = (x.float() for x in inputs(2, 1, 5, 7, 3, 2))
        with torch.no_grad(), pytest.warns(RuntimeWarning) as warned:
            got = additive_attention_cpu(qp, kp, w, values, mask, backend="auto")
            again = additive_attention_cpu(qp, kp, w, values, mask, backend="auto")
        assert len(warned) == 1  # checked once per process
        message = str(warned[0].message)
        assert "RuntimeError: no C++ compiler found)" in message and "using its NumPy" in message
        with torch.no_grad():
            want = additive_attention_cpu(qp, kp, w, values, mask, backend="numpy")
        assert torch.equal(got, want) and torch.equal(again, want)
    finally:
        cpu_additive.inductor_compiles.cache_clear()  # later tests check the real compiler


def test_attention_module_takes_its_backend_from_the_environment(monkeypatch):
    """AdditiveAttention's CPU path: ATTNBENCH_CPU_KERNEL_BACKEND, NumPy when unset (Inductor's
    compile did not pay in the pipelines); CPU_KERNEL_BACKEND overrides it in code."""
    from attnbench import settings
    from attnbench.attention import additive

    assert settings.CPU_KERNEL_BACKENDS == cpu_additive.BACKENDS  # what the CLI checks
    monkeypatch.delenv("ATTNBENCH_CPU_KERNEL_BACKEND", raising=False)
    assert additive._cpu_kernel().keywords == {"backend": "numpy"}
    monkeypatch.setenv("ATTNBENCH_CPU_KERNEL_BACKEND", "auto")
    assert additive._cpu_kernel().keywords == {"backend": "auto"}
    monkeypatch.setattr(additive, "CPU_KERNEL_BACKEND", "inductor")
    assert additive._cpu_kernel().keywords == {"backend": "inductor"}
