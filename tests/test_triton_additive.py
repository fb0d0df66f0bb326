"""The fused Triton additive-attention kernel, run by Triton's CPU interpreter.

Triton decides interpreted vs compiled when `@triton.jit` runs, for triton's own library
functions (at `import triton`) as for ours (at import of the kernel module), so
TRITON_INTERPRET=1 is set before the first import of triton below, then restored: after the
imports it is set again only while each test here runs (some of triton's modules are imported
lazily, at a kernel's first run, and read it then), so other tests see the environment they
had. CI installs
the `triton` extra (Makefile), so these tests run there; speed is measured only on a GPU
(`python -m attnbench.attention.kernels.gpu_check`).
"""

from __future__ import annotations

import os
import re
import sys

import pytest
import torch

_KERNEL_MODULE = "attnbench.attention.kernels.triton_additive"
_TRITON_IMPORTED_BEFORE = "triton" in sys.modules
_previous = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"
try:
    pytest.importorskip("triton")
    from attnbench.attention.kernels import triton_additive as ta
finally:
    if _previous is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = _previous

from attnbench.attention import AdditiveAttention, additive  # noqa: E402
from attnbench.attention.kernels import load_kernel_file, triton_available  # noqa: E402

# Float32 kernel (exact tanh under the interpreter) vs a float64 reference: a score sums `a`
# terms |w tanh| <= ~3, each rounded at ~6e-8 relative, so scores are off by ~1e-6 at most,
# and softmax, context and gradients inherit errors of that order (observed: <= 1.5e-6 on
# values of size 1..6). 2e-5 absolute + 1e-4 relative leaves >10x margin, while any formula
# or masking mistake shows up as errors of 1e-2 and more.
ATOL, RTOL = 2e-5, 1e-4


@pytest.fixture(autouse=True)
def _interpreted_kernels(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if not ta.INTERPRETED:
        pytest.fail(
            f"{_KERNEL_MODULE} was imported before this module set TRITON_INTERPRET=1 "
            f"(triton imported earlier: {_TRITON_IMPORTED_BEFORE}); run these tests in a "
            "fresh process or import triton only inside tests"
        )


def reference(qp, kp, w, values, mask):
    """The formula in float64, materialising tanh: (B, H, T_q, T_k, a)."""
    scores = (torch.tanh(qp[:, :, :, None, :] + kp[:, :, None, :, :]) * w[None, :, None, None]).sum(
        -1
    )
    if mask is None:
        return torch.softmax(scores, dim=-1) @ values
    pad = mask[:, None, None, :]
    weights = torch.softmax(scores.masked_fill(pad, -1e300), dim=-1).masked_fill(pad, 0.0)
    return weights @ values


def make_inputs(batch, heads, t_q, t_k, dim, dv, seed, pad_lengths=None):
    """Random float64 leaves; pad_lengths[b] = number of padded keys at the end of row b."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()

    tensors = (
        rand(batch, heads, t_q, dim),
        rand(batch, heads, t_k, dim),
        rand(heads, dim),
        rand(batch, heads, t_k, dv),
    )
    mask = None
    if pad_lengths is not None:
        mask = torch.zeros(batch, t_k, dtype=torch.bool)
        for row, length in enumerate(pad_lengths):
            if length:
                mask[row, t_k - length :] = True
    return tensors, mask


def run_both(tensors, mask, **blocks):
    """(kernel output, kernel grads, reference output, reference grads) for one upstream grad."""
    inputs32 = [t.detach().float().requires_grad_() for t in tensors]
    out = ta.fused_additive_attention(*inputs32, mask, **blocks)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    out.backward(grad_out)
    ref = reference(*tensors, mask)
    ref_grads = torch.autograd.grad(ref, tensors, grad_out.double())
    return out, [t.grad for t in inputs32], ref, ref_grads


CASES = {
    # B, H, T_q, T_k, a, dv, padded keys per row, kernel blocks
    "no-mask": (2, 1, 5, 7, 8, 8, None, {}),
    "heads-mask-all-pad-row": (2, 2, 21, 27, 10, 8, [6, 27], dict(block_m=8, block_n=16)),
    "long-ragged-a": (1, 2, 37, 45, 14, 8, [13], dict(block_n=32, block_a=4)),
    # keys split 0-11, 12-23, 24-26: row 0's last split is all padding, row 1 has no key at all
    "key-splits": (2, 2, 21, 27, 10, 8, [6, 27], dict(block_m=8, block_n=4, key_splits=3)),
    # keys 20-39 of row 0 are padding: whole key blocks the kernels skip, row 1 has none
    "skipped-padding-blocks": (2, 1, 9, 40, 8, 8, [20, 0], dict(block_m=4, block_n=8)),
    # many values per head, in the blocks `fit_blocks` picks for them on an H100/H200
    "dv-256-fitted-blocks": (1, 1, 40, 70, 8, 256, [10], dict(backward_blocks=(64, 64))),
    "dv-1000-fitted-blocks": (1, 1, 20, 33, 8, 1000, [5], dict(backward_blocks=(16, 16))),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_forward_and_backward_match_float64_reference(case):
    batch, heads, t_q, t_k, dim, dv, pads, blocks = case
    tensors, mask = make_inputs(batch, heads, t_q, t_k, dim, dv, seed=t_q, pad_lengths=pads)
    out, grads, ref, ref_grads = run_both(tensors, mask, **blocks)
    assert out.shape == (batch, heads, t_q, dv) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=ATOL, rtol=RTOL)
    for name, grad, ref_grad in zip(
        ["query_proj", "key_proj", "v", "values"], grads, ref_grads, strict=True
    ):
        torch.testing.assert_close(grad.double(), ref_grad, atol=ATOL, rtol=RTOL, msg=name)


def test_all_padding_row_gives_exact_zero_context_and_gradients():
    tensors, mask = make_inputs(2, 1, 6, 9, 8, 8, seed=3, pad_lengths=[0, 9])
    out, grads, _, _ = run_both(tensors, mask, block_m=4, block_n=4)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    query_grad, key_grad, _, values_grad = grads
    for grad in grads:
        assert torch.isfinite(grad).all()
    for grad in (query_grad, key_grad, values_grad):
        assert torch.equal(grad[1], torch.zeros_like(grad[1]))
    assert out[0].abs().sum() > 0 and query_grad[0].abs().sum() > 0


def test_half_precision_inputs_compute_in_float32():
    tensors, mask = make_inputs(1, 1, 5, 6, 8, 8, seed=5, pad_lengths=[2])
    half = [t.detach().to(torch.bfloat16).requires_grad_() for t in tensors]
    out = ta.fused_additive_attention(*half, mask)
    out.sum().backward()
    assert out.dtype == torch.bfloat16 and all(t.grad.dtype == torch.bfloat16 for t in half)
    ref = reference(*[t.detach().double() for t in half], mask)
    torch.testing.assert_close(out.double(), ref, atol=2e-2, rtol=2e-2)  # bf16 output rounding


def test_bad_shapes_and_devices_raise_value_error():
    qp, kp, w, v = (torch.zeros(1, 1, 4, 8), torch.zeros(1, 1, 6, 8), torch.zeros(1, 8), None)
    v = torch.zeros(1, 1, 6, 8)
    with pytest.raises(ValueError, match="4-D"):
        ta.fused_additive_attention(qp[0], kp, w, v)
    with pytest.raises(ValueError, match="does not match"):
        ta.fused_additive_attention(qp, kp[..., :4], w, v)
    with pytest.raises(ValueError, match="v_weight"):
        ta.fused_additive_attention(qp, kp, w[:, :4], v)
    with pytest.raises(ValueError, match="values"):
        ta.fused_additive_attention(qp, kp, w, v[:, :, :5])
    with pytest.raises(ValueError, match="key_padding_mask"):
        ta.fused_additive_attention(qp, kp, w, v, torch.zeros(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="float32"):
        ta.fused_additive_attention(qp.double(), kp, w, v)
    with pytest.raises(ValueError, match="power of two"):
        ta.fused_additive_attention(qp, kp, w, v, block_m=6)
    with pytest.raises(ValueError, match="block_a=3 must be a power of two"):
        ta.fused_additive_attention(qp, kp, w, v, block_a=3)
    with pytest.raises(ValueError, match="key_splits"):
        ta.fused_additive_attention(qp, kp, w, v, key_splits=0)


def test_triton_available_reads_the_interpreter_flag(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton_available()
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert triton_available() == torch.cuda.is_available()


def _module_and_inputs(heads):
    torch.manual_seed(heads)
    module = AdditiveAttention(12, 10, attn_dim=8 * heads, num_heads=heads)
    query, keys, values = torch.randn(2, 5, 12), torch.randn(2, 9, 10), torch.randn(2, 9, 8)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, 6:] = True
    return module, query, keys, values, mask


@pytest.mark.parametrize("heads", [1, 2])
def test_need_weights_false_returns_the_same_context_on_cpu(heads, monkeypatch):
    module, query, keys, values, mask = _module_and_inputs(heads)
    cpu_kernel = additive._cpu_kernel()
    assert cpu_kernel is not None  # its NumPy backend needs only attnbench's dependencies
    calls = []

    def spy(*args):
        calls.append(args)
        return cpu_kernel(*args)

    monkeypatch.setattr(additive, "_cpu_kernel", lambda: spy)
    monkeypatch.setattr(additive, "CPU_KERNEL_MIN_WORK", 0)  # these shapes are tiny
    expected, weights = module(query, keys, values, mask)
    assert weights is not None
    context, none = module(query, keys, values, mask, need_weights=False)  # training: reference
    assert none is None and not calls
    torch.testing.assert_close(context, expected)
    with torch.no_grad():  # inference: the CPU kernel where it exists
        context, none = module(query, keys, values, mask, need_weights=False)
    assert none is None and len(calls) == 1
    torch.testing.assert_close(context, expected.detach(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("t_q", "t_k", "kernel"), [(1, 30, False), (64, 64, True)])
def test_the_cpu_kernel_is_used_only_where_it_pays(t_q, t_k, kernel, monkeypatch):
    """A decoder step (one query, a short source) is faster on the reference path."""
    calls = []

    def kernel_spy(q, k, w, v, mask):
        calls.append(1)
        return torch.zeros(*q.shape[:-1], v.shape[-1])

    monkeypatch.setattr(additive, "_cpu_kernel", lambda: kernel_spy)
    module = AdditiveAttention(16, 16, attn_dim=64)  # a = 64: 64 * 64 * 64 = 2**18 tanh
    query, keys = torch.randn(2, t_q, 16), torch.randn(2, t_k, 16)
    with torch.no_grad():
        module(query, keys, keys, need_weights=False)
    assert bool(calls) == kernel


@pytest.mark.parametrize(
    ("programs", "key_blocks", "expected"),
    [
        (128, 128, 4),  # H200, T=4096, B=H=1, 32x32 tiles: measured 50.1% vs 34.5% unsplit
        (512, 512, 1),  # T=16384: the GPU is full already (58.5% unsplit)
        (1024, 128, 1),  # the benchmark's T=4096 (B=2, H=4)
        (8, 32, 2),  # few programs, but a split keeps >= 16 key blocks
        (1, 16, 1),  # too few keys to split
    ],
)
def test_key_splits_fill_the_gpu_without_tiny_splits(programs, key_blocks, expected):
    assert ta.auto_key_splits(programs, sms=132, key_blocks=key_blocks) == expected


F32, BF16 = torch.float32, torch.bfloat16


@pytest.mark.parametrize(
    ("device", "dtypes", "grad", "queries", "work", "rows", "expected"),
    [
        ("cuda", {BF16, F32}, True, 256, 2**26, 16, "cuda"),  # AMP training, 2**30 tanh: fused
        ("cuda", {F32}, True, 64, 2**17, 32, None),  # a float32 step at 2**22: reference (0.44x)
        ("cuda", {F32}, True, 512, 2**26, 32, None),  # float32 training at 2**31: lost 0.24x
        ("cuda", {F32}, True, 512, 2**28, 32, "cuda"),  # 2**33: reference tensors of 32 GiB
        ("cuda", {BF16}, True, 512, 2**24, 32, None),  # 16-bit training below 2**30
        ("cuda", {F32}, False, 64, 2**20, 64, "cuda"),  # inference at 2**26: fused
        ("cuda", {F32}, False, 64, 2**20, 32, None),  # inference below 2**26: reference
        ("cuda", {F32}, True, 1, 2**30, 1, None),  # a decoder step: 31/32 of the tile wasted
        ("cuda", {torch.float64}, True, 64, 2**30, 1, None),  # no float64 kernel
        ("cpu", {F32}, True, 64, 2**20, 1, None),  # training on CPU: no fused backward
        ("cpu", {F32}, False, 64, 2**18, 1, "cpu"),  # inference, large: the NumPy kernel
        ("cpu", {F32}, False, 1, 2**15, 64, None),  # decoder step: per (row, head) work counts
        ("cpu", {F32, torch.float64}, False, 64, 2**20, 1, None),  # mixed dtypes
        ("mps", {F32}, False, 64, 2**20, 1, None),
    ],
)
def test_which_path_a_call_takes(device, dtypes, grad, queries, work, rows, expected):
    assert additive.fused_path(device, dtypes, grad, queries, work, rows) == expected


def test_the_kernel_threshold_can_be_forced_for_a_block_and_comes_back():
    """`cuda_kernel_from` (what the GPU checks compare the two paths with) moves every
    threshold inside its block only, even when the block raises."""
    before = dict(additive.CUDA_KERNEL_MIN_WORK)
    small = ("cuda", {F32}, True, 64, 2**10, 1)
    assert additive.fused_path(*small) is None
    with additive.cuda_kernel_from(0):
        assert additive.fused_path(*small) == "cuda"
    with pytest.raises(RuntimeError), additive.cuda_kernel_from(2**62):
        assert additive.fused_path("cuda", {BF16}, False, 512, 2**40, 1) is None
        raise RuntimeError
    assert before == additive.CUDA_KERNEL_MIN_WORK


@pytest.mark.parametrize("heads", [1, 2])
def test_module_through_the_fused_kernel_matches_its_reference_path(heads):
    """The CUDA dispatch's head splitting and merging, run with the interpreted kernel."""
    module, query, keys, values, mask = _module_and_inputs(heads)
    expected, _ = module(query, keys, values, mask)
    grads = torch.autograd.grad(expected.sum(), list(module.parameters()))
    prepared = module.prepare_keys(keys)
    context, none = module._fused_context(
        ta.fused_additive_attention, query, prepared, values, mask
    )
    assert none is None
    torch.testing.assert_close(context, expected, atol=ATOL, rtol=RTOL)
    fused_grads = torch.autograd.grad(context.sum(), list(module.parameters()))
    for grad, fused_grad in zip(grads, fused_grads, strict=True):
        torch.testing.assert_close(fused_grad, grad, atol=ATOL, rtol=RTOL)


def test_the_gpu_scripts_say_so_without_cuda(monkeypatch, capsys):
    """gpu_check, kernel_versions and dispatch_rule (the device session's commands): one
    line, exit 2."""
    import importlib.util
    from pathlib import Path

    from attnbench.attention.kernels import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--sweep"]) == 2
    assert capsys.readouterr().err.strip() == "CUDA is not available: this check needs a GPU"
    path = Path(__file__).resolve().parents[1] / "reports/benchmarks/gpu/kernel_versions.py"
    spec = importlib.util.spec_from_file_location("kernel_versions", path)
    versions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(versions)
    assert versions.main(["--old", str(path)]) == 2
    assert "needs a GPU" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        versions.main(["--old", "no-such-kernel.py"])
    assert exit_info.value.code == 2
    assert "--old no-such-kernel.py: no such file" in capsys.readouterr().err
    rule = load_kernel_file(str(path.with_name("dispatch_rule.py")))
    assert rule.main([]) == 2
    assert capsys.readouterr().err.strip() == (
        "CUDA and Triton are not both available: this check needs a GPU"
    )
    with pytest.raises(SystemExit) as exit_info:
        rule.main(["--lengths", "64", "0"])
    assert exit_info.value.code == 2
    assert "--lengths, --batch and --attn-dim must be positive" in capsys.readouterr().err
    old = load_kernel_file(ta.__file__)  # an earlier kernel file loads beside the current one
    assert old is not ta and callable(old.fused_additive_attention)


@pytest.mark.slow
def test_the_tanh_loop_reading_needs_no_gpu_and_sees_fma_contraction():
    """reports/benchmarks/gpu/sass_loop.py (NOTES.md's instruction counts) compiles for sm_90
    here; without FMA contraction the loop must take more instructions per tanh."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "reports/benchmarks/gpu/sass_loop.py"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compiled, not run

    def per_tanh(*flags: str) -> float:
        done = subprocess.run([sys.executable, str(script), *flags], capture_output=True,
                              text=True, env=env, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return float(re.search(r"([\d.]+) per tanh", done.stdout).group(1))

    fused, unfused = per_tanh(), per_tanh("--no-fp-fusion")
    assert 3.0 <= fused < unfused


@pytest.mark.parametrize(
    ("blocks", "block_dv", "backward", "expected"),
    [
        ((128, 64), 64, True, (128, 64)),  # the default backward fits (112 KB)
        ((128, 64), 256, True, (64, 64)),  # 352 KB -> 208 KB: what the H200 refused at launch
        ((128, 64), 1024, True, (16, 16)),
        ((32, 32), 1024, False, (32, 32)),  # the forward stages less
        ((128, 64), 2048, True, None),  # not even 16 x 16: the dispatch takes the reference
    ],
)
def test_default_blocks_shrink_to_the_gpus_shared_memory(blocks, block_dv, backward, expected):
    limit = 232448  # H100 / H200: 227 KB per program
    assert ta.fit_blocks(*blocks, block_dv, backward, limit) == expected
    if expected:
        assert ta.shared_memory_bytes(*expected, block_dv, backward) <= limit
    else:  # a caller who asks the kernel itself gets one line saying what to do
        with pytest.raises(ValueError, match=r"values per head .* reference path"):
            ta._fitted(*blocks, block_dv, backward, limit)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kernel", "blocks", "dv"), [("bwd", (64, 64, 8, 4), 256), ("fwd", (32, 32, 8, 4), 512)]
)
def test_the_shared_memory_formula_is_the_compilers(kernel, blocks, dv):
    """`shared_memory_bytes` against Triton's own sm_90 compile (no GPU needed)."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "reports/benchmarks/gpu/sass_loop.py"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compiled, not run
    flags = ["--kernel", kernel, "--blocks", *map(str, blocks), "--dv", str(dv)]
    done = subprocess.run([sys.executable, str(script), *flags], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    shared = int(re.search(r"(\d+) bytes of shared memory", done.stdout).group(1))
    assert shared == ta.shared_memory_bytes(*blocks[:2], dv, kernel == "bwd")
