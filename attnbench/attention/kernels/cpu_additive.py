"""Inference-only additive attention on CPU, bounded by the speed of tanh rather than torch's.

Additive attention evaluates B*H*T_q*T_k*a tanh; on a CPU that count is the whole cost. On the
AVX-512 machine this was written on, `torch.tanh` manages ~4e8 float32 tanh/s per thread while
NumPy's SIMD `np.tanh` manages ~6e9/s on an L2-resident array (STACK.md saw ~2.6e9 on a busier
machine), so this path runs the elementwise work in NumPy:

* the (r, c, a) tile of `qp_i + kp_j` for r queries and c keys is built in one preallocated
  buffer (`np.add(..., out=)`) sized to stay in L2, then `np.tanh` overwrites it in place and
  a BLAS matvec with w turns it into r*c scores while it is still cache resident;
* each worker owns a block of queries: it fills the scores (rows, T_k) chunk by chunk, then
  does an exact two-pass softmax and one GEMM with the values. NumPy releases the GIL, so
  blocks run in parallel on `torch.get_num_threads()` threads;
* padded keys are dropped before any tanh is computed (their weight is exactly zero anyway),
  so padding costs nothing; a row whose keys are all padding gets a zero context.

A rational tanh approximation (Eigen's float32 one, degree 13/6 odd/even polynomials, max
abs error 3e-7) written as NumPy array operations needs ~20 passes per tile instead of one:
on a 64K-element cache-resident float32 array it ran at 7.8e8/s against `np.tanh`'s 5.6e9/s
(7.2x slower, one thread, 2026-11-26), since `np.tanh`'s SIMD loop already fuses such an
approximation into one pass. On an AVX2-only host NumPy 2.4 does not vectorise float32 tanh
(~3e8/s per core), so `backend="inductor"` has `torch.compile` fuse the add, that
approximation and the v product into one loop instead (no NumPy tiles). It won on AVX-512
hosts too, where it never stores the tile's tanh; `backend="auto"` takes it for float32
wherever Inductor compiles (a C++ compiler is needed) and NumPy otherwise. NumPy stays the
default: Inductor's compile costs each process seconds.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

from attnbench.attention.kernels.rational_tanh import rational_tanh

Backend = Literal["auto", "numpy", "inductor"]
BACKENDS: tuple[str, ...] = get_args(Backend)

#: elements per (r, c, a) tile: 2**18 float32 = 1 MiB. Larger tiles mean fewer NumPy calls,
#: and so less time holding the GIL between the workers' ufunc loops: on this 2-core EPYC,
#: B=1, T=4096, a=64, two threads reached 3.9e9 tanh/s with 2**16 and 4.5e9 with 2**18
#: (one thread: 2.45e9 either way; measured 2026-11-26 with nothing else running)
TILE_ELEMENTS = 2**18
#: queries per work item; the scores block (rows, T_k) is reused across its tiles
QUERY_BLOCK = 64
#: OpenBLAS runs a gemv of m*n < 2304*4 elements on the calling thread. Larger ones wake its
#: own threads, which then spin and steal the cores the other workers' np.tanh runs on
#: (measured: 2-10x slower), so each key chunk's matvec stays below this size.
GEMV_SINGLE_THREAD = 2304 * 4
#: below this many tanh a call runs on the calling thread: starting a pool costs ~0.1-1 ms
SERIAL_BELOW = 2**20
#: scores per call of the Inductor backend, (query rows) x (valid keys): 4 MiB of float32
INDUCTOR_SCORES = 2**20


def _check(
    query_proj: Tensor,
    key_proj: Tensor,
    v_weight: Tensor,
    values: Tensor,
    key_padding_mask: Tensor | None,
) -> None:
    tensors = [query_proj, key_proj, v_weight, values]
    if key_padding_mask is not None:
        tensors.append(key_padding_mask)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        raise RuntimeError(
            "additive_attention_cpu is inference only (no autograd); call it under "
            "torch.no_grad() or torch.inference_mode(), or use AdditiveAttention for training"
        )
    if any(t.device.type != "cpu" for t in tensors):
        raise ValueError("additive_attention_cpu runs on CPU tensors only")
    if query_proj.dim() != 4 or key_proj.dim() != 4 or values.dim() != 4:
        raise ValueError("query_proj, key_proj and values must be 4-d (B, H, T, dim)")
    b, h, _, a = query_proj.shape
    if key_proj.shape[:2] != (b, h) or key_proj.shape[3] != a:
        raise ValueError(f"key_proj {tuple(key_proj.shape)} does not match query_proj (B,H,*,a)")
    if tuple(v_weight.shape) != (h, a):
        raise ValueError(f"v_weight must be (H, a) = {(h, a)}, got {tuple(v_weight.shape)}")
    if values.shape[:3] != key_proj.shape[:3]:
        raise ValueError(f"values {tuple(values.shape)} does not match key_proj (B, H, T_k, *)")
    if key_padding_mask is not None and tuple(key_padding_mask.shape) != (
        b,
        key_proj.shape[2],
    ):
        raise ValueError(f"key_padding_mask must be (B, T_k), got {tuple(key_padding_mask.shape)}")
    if query_proj.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"float32 or float64 only, got {query_proj.dtype}")


def _block(
    qp: np.ndarray,
    kp: np.ndarray,
    w: np.ndarray,
    v: np.ndarray,
    out: np.ndarray,
    tile_elements: int,
) -> None:
    """qp (R, a), kp (T, a) valid keys only, w (a,), v (T, dv) -> out (R, dv) in place."""
    rows, a = qp.shape
    t_k = kp.shape[0]
    cols = min(t_k, max(1, (GEMV_SINGLE_THREAD - 1) // a), max(1, tile_elements // a))
    sub = max(1, min(rows, tile_elements // (cols * a)))
    buf = np.empty((sub, cols, a), dtype=qp.dtype)
    scores = np.empty((rows, t_k), dtype=qp.dtype)
    for i in range(0, rows, sub):
        r = min(sub, rows - i)
        for j in range(0, t_k, cols):
            c = min(cols, t_k - j)
            tile = buf[:r, :c]
            np.add(qp[i : i + r, None, :], kp[None, j : j + c, :], out=tile)
            np.tanh(tile, out=tile)
            np.matmul(tile, w, out=scores[i : i + r, j : j + c])
    scores -= scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    total = scores.sum(axis=1, keepdims=True)
    # torch's GEMM (MKL), single-threaded by the caller: a large OpenBLAS one would wake its
    # threads as described above, a multi-threaded MKL one leaves OpenMP threads spinning
    torch.mm(torch.from_numpy(scores), torch.from_numpy(v), out=torch.from_numpy(out))
    out /= total


def _scores(qp: Tensor, kp: Tensor, w: Tensor) -> Tensor:
    """qp (R, a), kp (T, a), w (a,) -> scores (R, T): sum_a w_a tanh(qp_ra + kp_ta)."""
    return (rational_tanh(qp[:, None, :] + kp[None, :, :]) * w).sum(-1)


@cache
def compiled_scores():
    """`_scores` compiled once for all shapes: Inductor fuses the add, Eigen's rational tanh
    and the v product into one vectorised, threaded loop, and the (R, T, a) tensor is never
    stored. First call ~10-20 s (C++ compile), ~3 s from Inductor's on-disk cache."""
    return torch.compile(_scores, dynamic=True)


@cache
def inductor_compiles() -> bool:
    """Whether `compiled_scores` compiles and runs here, checked once per process on tiny
    inputs (the compile the first real call would pay). Without a C++ compiler it cannot, and
    `backend="auto"` then says so once and takes the NumPy backend rather than failing."""
    try:
        with torch.no_grad():
            compiled_scores()(torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(4))
    except Exception as exc:  # any compile failure means: use NumPy
        reason = next(iter(str(exc).strip().splitlines()), "")  # a compiler log is long
        warnings.warn(
            f"the CPU additive kernel's Inductor backend did not compile here "
            f"({type(exc).__name__}: {reason}); using its NumPy backend",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


def resolve_backend(backend: str, dtype: torch.dtype) -> Backend:
    """The backend a call in `dtype` runs. "auto" takes Inductor for float32 where it
    compiles (it ran 1.2-3.8x the NumPy backend on an AVX-512 host and 2.2-4.1x on an AVX2
    one, reports/benchmarks/README.md) and NumPy otherwise (float64 included)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend != "auto":
        return backend  # type: ignore[return-value]
    return "inductor" if dtype == torch.float32 and inductor_compiles() else "numpy"


def _attend_inductor(qp: Tensor, kp: Tensor, w: Tensor, v: Tensor, out: Tensor) -> None:
    """qp (T_q, a), kp (T, a) valid keys only, w (a,), v (T, dv) -> out (T_q, dv) in place."""
    rows = max(1, INDUCTOR_SCORES // kp.shape[0])
    for start in range(0, qp.shape[0], rows):
        scores = compiled_scores()(qp[start : start + rows], kp, w)
        torch.mm(torch.softmax(scores, dim=1), v, out=out[start : start + rows])


def additive_attention_cpu(
    query_proj: Tensor,
    key_proj: Tensor,
    v_weight: Tensor,
    values: Tensor,
    key_padding_mask: Tensor | None = None,
    num_threads: int | None = None,
    tile_elements: int = TILE_ELEMENTS,
    backend: Backend = "numpy",
) -> Tensor:
    """Context of Bahdanau attention, softmax_j(sum_a w[h,a] tanh(qp_ia + kp_ja)) @ values.

    query_proj (B, H, T_q, a) = W_a s per head; key_proj (B, H, T_k, a) = U_a h + b per head;
    v_weight (H, a); values (B, H, T_k, dv); key_padding_mask (B, T_k) bool, True = padding.
    Returns context (B, H, T_q, dv) in the inputs' dtype (float32 or float64). Inference only.
    `num_threads` defaults to `torch.get_num_threads()`. During the call torch's intra-op
    threads are set to 1 (restored after): with MKL's OpenMP team spinning beside the NumPy
    work, even the single-threaded path ran 3x slower.

    `backend="inductor"` (float32 only) computes the scores with `compiled_scores` instead of
    NumPy tiles, on torch's threads: from T=256 it ran 3.4-4.1x faster on an AVX2-only host,
    where NumPy does not vectorise float32 tanh, and 1.2-3.8x on an AVX-512 one, where it
    does (reports/benchmarks/README.md); its tanh is Eigen's rational approximation (~3e-7
    absolute), NumPy's exact to float32 rounding. `"auto"`: `resolve_backend`.
    """
    _check(query_proj, key_proj, v_weight, values, key_padding_mask)
    if resolve_backend(backend, query_proj.dtype) == "inductor":
        return _additive_attention_inductor(
            query_proj, key_proj, v_weight, values, key_padding_mask, num_threads
        )
    dtype = query_proj.dtype
    b, h, t_q, _ = query_proj.shape
    dv = values.shape[3]
    np_dtype = np.float32 if dtype == torch.float32 else np.float64

    def as_np(x: Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.detach().to(dtype).numpy(), dtype=np_dtype)

    qp, kp, w, v = (as_np(x) for x in (query_proj, key_proj, v_weight, values))
    out = np.zeros((b, h, t_q, dv), dtype=np_dtype)
    keep = None if key_padding_mask is None else ~key_padding_mask.detach().numpy().astype(bool)
    jobs = []
    for bi in range(b):
        index = None if keep is None else np.flatnonzero(keep[bi])
        if t_q == 0 or (index is not None and index.size == 0):
            continue  # all keys padded: the context stays zero
        for hi in range(h):
            k_valid = kp[bi, hi] if index is None else kp[bi, hi, index]
            v_valid = v[bi, hi] if index is None else v[bi, hi, index]
            for start in range(0, t_q, QUERY_BLOCK):
                stop = min(start + QUERY_BLOCK, t_q)
                jobs.append(
                    (qp[bi, hi, start:stop], k_valid, w[hi], v_valid, out[bi, hi, start:stop])
                )
    work = sum(job[0].size * job[1].shape[0] for job in jobs)
    workers = min(len(jobs), num_threads or torch.get_num_threads())
    if work < SERIAL_BELOW and num_threads is None:
        workers = 1
    intra_op = torch.get_num_threads()
    torch.set_num_threads(1)  # each worker's GEMM on its own thread: no OpenMP teams
    try:
        if workers <= 1:
            for job in jobs:
                _block(*job, tile_elements)
        else:
            with ThreadPoolExecutor(workers) as pool:
                for future in [pool.submit(_block, *job, tile_elements) for job in jobs]:
                    future.result()
    finally:
        torch.set_num_threads(intra_op)
    return torch.from_numpy(out)


def _additive_attention_inductor(
    query_proj: Tensor,
    key_proj: Tensor,
    v_weight: Tensor,
    values: Tensor,
    key_padding_mask: Tensor | None,
    num_threads: int | None,
) -> Tensor:
    """`additive_attention_cpu(backend="inductor")`: padded keys dropped first, as there."""
    if query_proj.dtype != torch.float32:
        raise ValueError(
            f"backend='inductor' computes a float32 tanh, got {query_proj.dtype}; "
            "use backend='numpy' for float64"
        )
    b, h, t_q, _ = query_proj.shape
    out = query_proj.new_zeros(b, h, t_q, values.shape[3])
    intra_op = torch.get_num_threads()
    torch.set_num_threads(num_threads or intra_op)
    try:
        for bi in range(b):
            keep = None if key_padding_mask is None else (~key_padding_mask[bi]).nonzero()[:, 0]
            if t_q == 0 or (keep is not None and keep.numel() == 0):
                continue  # all keys padded: the context stays zero
            for hi in range(h):
                kp, v = key_proj[bi, hi].contiguous(), values[bi, hi]
                if keep is not None:
                    kp, v = kp[keep], v[keep]
                qp = query_proj[bi, hi].contiguous()
                _attend_inductor(qp, kp, v_weight[hi].contiguous(), v, out[bi, hi])
    finally:
        torch.set_num_threads(intra_op)
    return out


def additive_context_cpu(
    attention: torch.nn.Module,
    query: Tensor,
    keys: Tensor,
    values: Tensor,
    key_padding_mask: Tensor | None = None,
    **options: int | str,
) -> Tensor:
    """The context an `AdditiveAttention` module computes, via the fast path.

    query (B, T_q, D_q), keys (B, T_k, D_k), values (B, T_k, D_v) -> context (B, T_q, D_v).
    """
    from attnbench.attention.base import merge_heads, split_heads

    heads = attention.num_heads
    with torch.no_grad():
        qp = split_heads(attention.query_proj(query), heads)
        kp = split_heads(attention.prepare_keys(keys), heads)
        w = attention.v.weight.view(heads, attention.attn_dim // heads)
        vals = split_heads(values, heads)
        context = additive_attention_cpu(qp, kp, w, vals, key_padding_mask, **options)
    return merge_heads(context)
