"""A Triton kernel that does nothing but tanh: the GPU's tanh throughput, measured.

Each element is pushed through `tanh.approx.f32` (the SFU instruction) ITERS times in
registers, so memory traffic is negligible and the rate is that of the special-function units.
Imported only where Triton and a CUDA GPU exist (the caller guards the import).
"""

from __future__ import annotations

import time

import torch
import triton
import triton.language as tl


@triton.jit
def _tanh_loop(x_ptr, out_ptr, n, ITERS: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n, other=0.0)
    for _ in range(ITERS):
        x = tl.inline_asm_elementwise(
            "tanh.approx.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    tl.store(out_ptr + offs, x, mask=offs < n)


def tanh_rate(seconds: float = 0.3, iters: int = 256) -> float:
    """tanh evaluations per second of the `tanh.approx.f32` loop over a 4 Mi-element array."""
    n, block = 2**22, 1024
    x = torch.rand(n, device="cuda", dtype=torch.float32) * 2 - 1
    out = torch.empty_like(x)
    grid = (triton.cdiv(n, block),)
    _tanh_loop[grid](x, out, n, ITERS=iters, BLOCK=block)  # compile + warm up
    torch.cuda.synchronize()
    calls, tic = 0, time.perf_counter()
    while time.perf_counter() - tic < seconds:
        _tanh_loop[grid](x, out, n, ITERS=iters, BLOCK=block)
        calls += 1
    torch.cuda.synchronize()
    return n * iters * calls / (time.perf_counter() - tic)
