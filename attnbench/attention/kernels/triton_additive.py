"""Fused additive (Bahdanau) attention in Triton: forward and backward, never storing tanh.

The reference path builds the (B, H, T_q, T_k, a) tensor tanh(qp_i + kp_j) and so is bound
by memory long before compute. Here each program owns a tile of BLOCK_M queries x BLOCK_N
keys, builds the scores s_ij = sum_a w_a tanh(qp_ia + kp_ja) in registers (BLOCK_A
attention-dim columns per loop trip, as a 3-D accumulator: `_scores`) and folds them into a
FlashAttention-style online softmax; key blocks that are all padding are skipped. Only the
context (B, H, T_q, dv) and the per-row logsumexp (B, H, T_q) reach memory; the backward
recomputes tanh from them. What is left is B*H*T_q*T_k*a tanh evaluations (two passes of
them in the backward), so on a GPU the hardware `tanh.approx.f32` (the special-function
unit) is the limit: see NOTES.md.

Layout: qp and kp are passed "attention-dim major", (B*H, a, T), so that loading one column
(one `a` for BLOCK_M queries) is a contiguous, coalesced load; the wrapper transposes them
once (O(T*a) memory traffic, negligible against O(T_q*T_k*a) tanh).

Masking: padded keys (key_padding_mask True) and out-of-range keys get score -inf and weight
exactly 0. A row whose keys are all padding keeps running max -inf and sum 0; it stores
context 0 and logsumexp 0, and the backward gives it P = 0, so its gradients are exactly 0.

Run on CPU tensors only with TRITON_INTERPRET=1 set before this module is imported (Triton
decides interpreted vs compiled when `@triton.jit` runs, i.e. at import). The interpreter
cannot run inline PTX, so it always uses the exact tanh formula.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from attnbench.attention.kernels import triton_available

__all__ = ["INTERPRETED", "auto_key_splits", "fused_additive_attention", "triton_available"]

#: whether the kernels below were created as interpreted functions (decided at import)
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
#: the backward's score pass takes one column at a time: its (128 x 64) tile is 4x the
#: forward's, and a deeper 3-D accumulator would spill registers (NOTES.md, v6)
BACKWARD_SCORE_A = 1
#: `s += w * tanh(...)` must compile to one FMA: without fusion the sm_90 loop takes 4.75
#: instructions per tanh instead of 3.75 (NOTES.md, v6). Triton 3.9 warns that its default
#: turns to no fusion in 3.10, so the kernels ask for it
FP_FUSION = True


@triton.jit
def _tanh(x, PRECISE: tl.constexpr):
    if PRECISE:
        # exact and overflow-free: e = exp(-2|x|) lies in (0, 1]
        e = tl.exp(-2.0 * tl.abs(x))
        t = (1.0 - e) / (1.0 + e)
        return tl.where(x < 0, -t, t)
    else:
        # one MUFU instruction; max rel. error ~2^-11, plenty for attention scores
        return tl.inline_asm_elementwise(
            "tanh.approx.f32 $0, $1;",
            "=r,r",
            [x],
            dtype=tl.float32,
            is_pure=True,
            pack=1,
        )


@triton.jit
def _scores(
    q_base,
    k_base,
    w_base,
    offs_m,
    offs_n,
    Q_LEN,
    K_LEN,
    A,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_A: tl.constexpr,
    PRECISE: tl.constexpr,
):
    """s (BLOCK_M, BLOCK_N) = sum_a w_a tanh(qp_ia + kp_ja); A is a multiple of BLOCK_A.

    BLOCK_A columns at a time as a (BLOCK_A, BLOCK_M, BLOCK_N) accumulator, summed over the
    columns once at the end: the compiler keeps the column axis inside each thread, so every
    tanh costs one add, one MUFU op and one FMA, and the q/k columns arrive as 2-D tile loads.
    Unmasked loads: the wrapper pads qp/kp to Q_LEN/K_LEN, multiples of the blocks (NOTES.md,
    v6: 5.8 -> 3.7 instructions per tanh in the loop).
    """
    offs_a = tl.arange(0, BLOCK_A)
    s3 = tl.zeros((BLOCK_A, BLOCK_M, BLOCK_N), dtype=tl.float32)
    for a0 in range(0, A, BLOCK_A):
        cols = a0 + offs_a
        q = tl.load(q_base + cols[:, None] * Q_LEN + offs_m[None, :])
        k = tl.load(k_base + cols[:, None] * K_LEN + offs_n[None, :])
        w = tl.load(w_base + cols)
        s3 += w[:, None, None] * _tanh(q[:, :, None] + k[:, None, :], PRECISE)
    return tl.sum(s3, axis=0)


@triton.jit
def _fwd_kernel(
    qp_ptr,  # (BH, A, Q_LEN) fp32, Q_LEN >= T_q a multiple of BLOCK_M (zero-padded)
    kp_ptr,  # (BH, A, K_LEN) fp32, K_LEN >= T_k a multiple of BLOCK_N (zero-padded)
    w_ptr,  # (H, A) fp32
    v_ptr,  # (BH, T_k, DV) fp32
    mask_ptr,  # (B, T_k) int8, 1 = padding (unused without HAS_MASK)
    out_ptr,  # (SPLITS, BH, T_q, DV) fp32: each key split's normalised context
    lse_ptr,  # (SPLITS, BH, T_q) fp32: each split's logsumexp, -inf where it saw no key
    T_q,
    T_k,
    Q_LEN,
    K_LEN,
    A,
    DV,
    H,
    KEYS_PER_SPLIT,  # a multiple of BLOCK_N; program_id(2) takes keys [split * it, ...)
    HAS_MASK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_A: tl.constexpr,
    BLOCK_DV: tl.constexpr,
    PRECISE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    split = tl.program_id(2)
    BH = tl.num_programs(1)
    b = bh // H
    h = bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_in = offs_m < T_q
    offs_d = tl.arange(0, BLOCK_DV)
    d_in = offs_d < DV
    key_start = split * KEYS_PER_SPLIT
    key_end = tl.minimum(key_start + KEYS_PER_SPLIT, T_k)
    q_base = qp_ptr + bh * A * Q_LEN
    k_base = kp_ptr + bh * A * K_LEN
    w_base = w_ptr + h * A
    v_base = v_ptr + bh * T_k * DV

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_DV), dtype=tl.float32)
    for start_n in range(key_start, key_end, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_in = offs_n < key_end
        n_ok = n_in
        if HAS_MASK:
            pad = tl.load(mask_ptr + b * T_k + offs_n, mask=n_in, other=1)
            n_ok = n_in & (pad == 0)
        # a block of padding only (the tail of a right-padded row) adds nothing: skip its tanh
        if tl.max(n_ok.to(tl.int32), axis=0) > 0:
            s = _scores(
                q_base, k_base, w_base, offs_m, offs_n, Q_LEN, K_LEN, A,
                BLOCK_M, BLOCK_N, BLOCK_A, PRECISE,
            )  # fmt: skip
            s = tl.where(n_ok[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            # rows with no valid key so far keep m = -inf; subtract 0 instead (never -inf - -inf)
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.exp(s - m_safe[:, None])
            alpha = tl.exp(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, axis=1)
            v = tl.load(
                v_base + offs_n[:, None] * DV + offs_d[None, :],
                mask=n_in[:, None] & d_in[None, :],
                other=0.0,
            )
            acc = acc * alpha[:, None] + tl.dot(p, v, input_precision=DOT_PRECISION)
            m_i = m_new
    has_keys = l_i > 0.0
    l_safe = tl.where(has_keys, l_i, 1.0)
    out = acc / l_safe[:, None]
    row = split * BH + bh
    tl.store(
        out_ptr + row * T_q * DV + offs_m[:, None] * DV + offs_d[None, :],
        out,
        mask=m_in[:, None] & d_in[None, :],
    )
    lse = tl.where(has_keys, m_i + tl.log(l_safe), float("-inf"))
    tl.store(lse_ptr + row * T_q + offs_m, lse, mask=m_in)


@triton.jit
def _bwd_kernel(
    qp_ptr,  # (BH, A, Q_LEN) fp32, zero-padded as in the forward
    kp_ptr,  # (BH, A, K_LEN) fp32
    w_ptr,  # (H, A) fp32
    v_ptr,  # (BH, T_k, DV) fp32
    mask_ptr,  # (B, T_k) int8
    do_ptr,  # (BH, T_q, DV) fp32
    lse_ptr,  # (BH, T_q) fp32
    delta_ptr,  # (BH, T_q) fp32, D_i = rowsum(dO_i * O_i)
    dqp_ptr,  # (BH, A, Q_LEN) fp32, zeroed; accumulated with atomics over key blocks
    dkp_ptr,  # (BH, A, K_LEN) fp32, zeroed; only this program touches its columns
    dv_ptr,  # (BH, T_k, DV) fp32
    dw_ptr,  # (BH, A, K_LEN) fp32, zeroed; per-key partial sums sum_i dS_ij t_ija of dw
    T_q,
    T_k,
    Q_LEN,
    K_LEN,
    A,
    DV,
    H,
    HAS_MASK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_A: tl.constexpr,
    SCORE_A: tl.constexpr,  # the first (score) pass's column step: its accumulator is 3-D
    BLOCK_DV: tl.constexpr,
    PRECISE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_in = offs_n < T_k
    n_ok = n_in
    if HAS_MASK:
        pad = tl.load(mask_ptr + b * T_k + offs_n, mask=n_in, other=1)
        n_ok = n_in & (pad == 0)
    offs_d = tl.arange(0, BLOCK_DV)
    d_in = offs_d < DV
    q_base = qp_ptr + bh * A * Q_LEN
    k_base = kp_ptr + bh * A * K_LEN
    w_base = w_ptr + h * A
    dq_base = dqp_ptr + bh * A * Q_LEN
    dk_base = dkp_ptr + bh * A * K_LEN
    dw_base = dw_ptr + bh * A * K_LEN
    nd_mask = n_in[:, None] & d_in[None, :]
    v = tl.load(
        v_ptr + bh * T_k * DV + offs_n[:, None] * DV + offs_d[None, :], mask=nd_mask, other=0.0
    )
    dv_acc = tl.zeros((BLOCK_N, BLOCK_DV), dtype=tl.float32)

    # keys that are all padding get no gradient: dV = 0 and no dq/dk/dw contribution
    n_valid = tl.max(n_ok.to(tl.int32), axis=0)
    for start_m in range(0, T_q * n_valid, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m_in = offs_m < T_q
        s = _scores(
            q_base, k_base, w_base, offs_m, offs_n, Q_LEN, K_LEN, A,
            BLOCK_M, BLOCK_N, SCORE_A, PRECISE,
        )  # fmt: skip
        lse = tl.load(lse_ptr + bh * T_q + offs_m, mask=m_in, other=0.0)
        delta = tl.load(delta_ptr + bh * T_q + offs_m, mask=m_in, other=0.0)
        valid = m_in[:, None] & n_ok[None, :]
        # invalid entries (padding, out of range, all-padding rows) get P = exp(-inf) = 0
        p = tl.exp(tl.where(valid, s - lse[:, None], float("-inf")))
        do = tl.load(
            do_ptr + bh * T_q * DV + offs_m[:, None] * DV + offs_d[None, :],
            mask=m_in[:, None] & d_in[None, :],
            other=0.0,
        )
        dv_acc += tl.dot(tl.trans(p), do, input_precision=DOT_PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        # second tanh pass: the per-column gradients need t_ija for every a
        for a0 in range(0, A, BLOCK_A):
            for da in tl.static_range(BLOCK_A):
                a = a0 + da
                q = tl.load(q_base + a * Q_LEN + offs_m)
                k = tl.load(k_base + a * K_LEN + offs_n)
                w = tl.load(w_base + a)
                t = _tanh(q[:, None] + k[None, :], PRECISE)
                g = ds * (1.0 - t * t)  # w_a is applied to the reduced columns, not the tile
                tl.atomic_add(dq_base + a * Q_LEN + offs_m, w * tl.sum(g, axis=1), mask=m_in)
                # atomics (uncontended: no other program owns these keys) keep the
                # read-modify-write coherent across the program's threads
                tl.atomic_add(dk_base + a * K_LEN + offs_n, w * tl.sum(g, axis=0), mask=n_in)
                # dw as column sums: no whole-tile reduction (and barrier) per column
                tl.atomic_add(dw_base + a * K_LEN + offs_n, tl.sum(ds * t, axis=0), mask=n_in)
    tl.store(dv_ptr + bh * T_k * DV + offs_n[:, None] * DV + offs_d[None, :], dv_acc, mask=nd_mask)


#: a key split keeps at least this many key blocks, so the merge stays small beside the kernel
MIN_BLOCKS_PER_SPLIT = 16


def auto_key_splits(programs: int, sms: int, key_blocks: int) -> int:
    """How many key ranges to split the forward into: doubled until the GPU holds >= 2
    programs per SM (the v6 kernel fits 2; fewer left SMs idle), while each split keeps
    MIN_BLOCKS_PER_SPLIT key blocks. On the H200 (132 SMs) at T=4096, B=H=1 (128 programs)
    this picks 4, measured 50.1% of the tanh limit against 34.5% unsplit (NOTES.md, v5).
    """
    splits = 1
    while programs * splits < 2 * sms and key_blocks // (2 * splits) >= MIN_BLOCKS_PER_SPLIT:
        splits *= 2
    return splits


def _combine_splits(out_parts: Tensor, lse_parts: Tensor) -> tuple[Tensor, Tensor]:
    """Per-split contexts (S, BH, T_q, dv) and logsumexps (S, BH, T_q) -> the whole softmax's.

    Each split normalised over its own keys, so the full context is the splits' contexts
    weighted by exp(lse_s - lse). A split (or a whole row) with no valid key has lse -inf:
    weight 0, and a row with none anywhere gets context 0 and lse 0 (what the backward expects).
    """
    if lse_parts.shape[0] == 1:
        return out_parts[0], torch.where(torch.isinf(lse_parts[0]), 0.0, lse_parts[0])
    lse = torch.logsumexp(lse_parts, dim=0)  # -inf where every split is -inf
    no_keys = torch.isinf(lse)
    lse = torch.where(no_keys, 0.0, lse)
    weights = torch.where(torch.isinf(lse_parts), 0.0, torch.exp(lse_parts - lse))
    return (weights.unsqueeze(-1) * out_parts).sum(dim=0), lse


def shared_memory_bytes(block_m: int, block_n: int, block_dv: int, backward: bool) -> int:
    """Shared memory one program of the forward (or backward) kernel takes: its dots' staged
    operands, 4 bytes each. Equal to `metadata.shared` of Triton's sm_90 compile in TF32 mode
    for every block and value size checked (tests/test_triton_additive.py); the precise (IEEE)
    mode takes less. The backward stages the dO tile twice, V and P."""
    if backward:
        return 4 * (2 * block_m * block_dv + block_n * block_dv + block_m * block_n)
    return 4 * (block_n * block_dv + block_m * block_n)


def fit_blocks(
    block_m: int, block_n: int, block_dv: int, backward: bool, limit: int
) -> tuple[int, int] | None:
    """(BLOCK_M, BLOCK_N) halved, queries first, until a program's shared memory fits `limit`
    bytes; None when even 16 x 16 does not. A (128 x 64) backward with 256 values per head
    needs 352 KB, past the H100/H200's 227 KB (Triton refused it at launch on an H200)."""
    while shared_memory_bytes(block_m, block_n, block_dv, backward) > limit:
        if block_m > 16:
            block_m //= 2
        elif block_n > 16:
            block_n //= 2
        else:
            return None
    return block_m, block_n


def _fitted(block_m: int, block_n: int, block_dv: int, backward: bool, limit: int):
    fitted = fit_blocks(block_m, block_n, block_dv, backward, limit)
    if fitted is None:
        raise ValueError(
            f"{block_dv} values per head (padded) need more shared memory than this GPU's "
            f"{limit} bytes even in 16 x 16 blocks; use more heads, or the reference path "
            "(AdditiveAttention with need_weights=True)"
        )
    return fitted


def shared_memory_limit(device: torch.device) -> int:
    """Bytes of shared memory a program may take on `device`: what Triton's launcher checks."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _shared_memory_limit(index)


@functools.cache
def _shared_memory_limit(index: int) -> int:
    from triton.runtime import driver

    return int(driver.active.utils.get_device_properties(index)["max_shared_mem"])


def value_dim_fits(dv: int, device: torch.device) -> bool:
    """Whether both kernels can run with `dv` values per head on `device` (at 16 x 16 blocks
    at worst); the dispatch takes the reference path where they cannot."""
    if device.type != "cuda" or INTERPRETED:
        return True
    limit = shared_memory_limit(device)
    return all(fit_blocks(16, 16, _block_dv(dv), bwd, limit) for bwd in (False, True))


def _block_dv(dv: int) -> int:
    """tl.dot needs every dimension >= 16 on a GPU; dv is padded to a power of two >= 16."""
    return max(16, triton.next_power_of_2(dv))


def _a_major(x: Tensor, padded_dim: int, padded_length: int) -> Tensor:
    """(B, H, T, a) -> contiguous fp32 (B*H, A, L), zero-padded to A columns and L >= T steps.

    Attention-dim major so that one column is one coalesced load; padded to a multiple of
    BLOCK_A (padded columns have w = 0, tanh(0) = 0) and of the blocks along T, so the
    kernels' tanh loops load without masks (what lies past T is masked after the scores).
    """
    batch, heads, length, dim = x.shape
    x = x.float().transpose(-1, -2).reshape(batch * heads, dim, length)
    pads = (0, padded_length - length, 0, padded_dim - dim)
    return torch.nn.functional.pad(x, pads).contiguous()


def _check_inputs(
    query_proj: Tensor,
    key_proj: Tensor,
    v_weight: Tensor,
    values: Tensor,
    key_padding_mask: Tensor | None,
) -> None:
    if query_proj.dim() != 4 or key_proj.dim() != 4 or values.dim() != 4:
        raise ValueError(
            "query_proj (B, H, T_q, a), key_proj (B, H, T_k, a) and values (B, H, T_k, dv) "
            f"must be 4-D, got {tuple(query_proj.shape)}, {tuple(key_proj.shape)}, "
            f"{tuple(values.shape)}"
        )
    batch, heads, t_q, dim = query_proj.shape
    b_k, h_k, t_k, a_k = key_proj.shape
    if (b_k, h_k, a_k) != (batch, heads, dim):
        raise ValueError(
            f"key_proj {tuple(key_proj.shape)} does not match query_proj "
            f"{tuple(query_proj.shape)} in B, H or a"
        )
    if tuple(values.shape[:3]) != (batch, heads, t_k):
        raise ValueError(
            f"values {tuple(values.shape)} must be (B, H, T_k, dv) = ({batch}, {heads}, {t_k}, dv)"
        )
    if tuple(v_weight.shape) != (heads, dim):
        raise ValueError(f"v_weight {tuple(v_weight.shape)} must be (H, a) = ({heads}, {dim})")
    if min(t_q, t_k, dim, values.shape[-1]) == 0:
        raise ValueError("T_q, T_k, a and dv must be positive")
    if key_padding_mask is not None and (
        key_padding_mask.dtype != torch.bool or tuple(key_padding_mask.shape) != (batch, t_k)
    ):
        raise ValueError(
            f"key_padding_mask must be bool (B, T_k) = ({batch}, {t_k}), got "
            f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
        )
    tensors = [query_proj, key_proj, v_weight, values]
    for t in tensors:
        if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"inputs must be float32, float16 or bfloat16, got {t.dtype}")
    devices = {t.device for t in tensors}
    if key_padding_mask is not None:
        devices.add(key_padding_mask.device)
    if len(devices) != 1:
        raise ValueError(f"all inputs must be on one device, got {sorted(map(str, devices))}")
    device = devices.pop()
    if device.type == "cuda":
        return
    if device.type == "cpu" and INTERPRETED:
        return
    raise ValueError(
        f"fused additive attention runs on CUDA tensors (got {device}); CPU tensors only under "
        "TRITON_INTERPRET=1 set before importing attnbench.attention.kernels.triton_additive"
    )


class _FusedAdditiveAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query_proj, key_proj, v_weight, values, key_padding_mask, config):
        batch, heads, t_q, dim = query_proj.shape
        t_k, dv = values.shape[2], values.shape[3]
        block_m, block_n, block_a, precise, num_warps, bwd_m, bwd_n = config[:7]
        padded = triton.cdiv(dim, block_a) * block_a
        q_len = triton.cdiv(t_q, max(block_m, bwd_m)) * max(block_m, bwd_m)
        k_len = triton.cdiv(t_k, max(block_n, bwd_n)) * max(block_n, bwd_n)
        qp = _a_major(query_proj, padded, q_len)
        kp = _a_major(key_proj, padded, k_len)
        w = torch.nn.functional.pad(v_weight.float(), (0, padded - dim)).contiguous()
        v = values.float().reshape(batch * heads, t_k, dv).contiguous()
        has_mask = key_padding_mask is not None
        mask = key_padding_mask.to(torch.int8).contiguous() if has_mask else v
        keys_per_split = triton.cdiv(triton.cdiv(t_k, config[8]), block_n) * block_n
        splits = triton.cdiv(t_k, keys_per_split)  # never an empty split
        parts = (splits, batch * heads, t_q)
        out = torch.empty(*parts, dv, device=v.device, dtype=torch.float32)
        lse = torch.empty(*parts, device=v.device, dtype=torch.float32)
        grid = (triton.cdiv(t_q, block_m), batch * heads, splits)
        _fwd_kernel[grid](
            qp, kp, w, v, mask, out, lse, t_q, t_k, q_len, k_len, padded, dv, heads,
            keys_per_split,
            HAS_MASK=has_mask, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_A=block_a,
            BLOCK_DV=_block_dv(dv), PRECISE=precise,
            DOT_PRECISION="ieee" if precise else "tf32", num_warps=num_warps,
            enable_fp_fusion=FP_FUSION,
        )  # fmt: skip
        out, lse = _combine_splits(out, lse)
        ctx.save_for_backward(qp, kp, w, v, mask, out, lse)
        ctx.config = config
        ctx.has_mask = has_mask
        ctx.shape = (batch, heads, t_q, t_k, dim, dv)
        ctx.dtypes = (query_proj.dtype, key_proj.dtype, v_weight.dtype, values.dtype)
        return out.view(batch, heads, t_q, dv).to(values.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        qp, kp, w, v, mask, out, lse = ctx.saved_tensors
        batch, heads, t_q, t_k, dim, dv = ctx.shape
        _, _, block_a, precise, _, block_m, block_n, num_warps = ctx.config[:8]
        do = grad_out.float().reshape(batch * heads, t_q, dv).contiguous()
        delta = (do * out).sum(dim=-1)  # (BH, T_q)
        n_blocks = triton.cdiv(t_k, block_n)
        padded, q_len, k_len = qp.shape[1], qp.shape[2], kp.shape[2]
        dqp = torch.zeros_like(qp)
        dkp = torch.zeros_like(kp)
        dv_ = torch.empty_like(v)
        dw_cols = torch.zeros_like(kp)  # (BH, A, K_LEN)
        _bwd_kernel[(n_blocks, batch * heads)](
            qp, kp, w, v, mask, do, lse, delta, dqp, dkp, dv_, dw_cols,
            t_q, t_k, q_len, k_len, padded, dv, heads,
            HAS_MASK=ctx.has_mask, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_A=block_a,
            SCORE_A=BACKWARD_SCORE_A,
            BLOCK_DV=_block_dv(dv), PRECISE=precise,
            DOT_PRECISION="ieee" if precise else "tf32", num_warps=num_warps,
            enable_fp_fusion=FP_FUSION,
        )  # fmt: skip
        q_dtype, k_dtype, w_dtype, v_dtype = ctx.dtypes
        grad_q = dqp.view(batch, heads, padded, q_len)[:, :, :dim, :t_q].transpose(-1, -2)
        grad_k = dkp.view(batch, heads, padded, k_len)[:, :, :dim, :t_k].transpose(-1, -2)
        grad_q, grad_k = grad_q.to(q_dtype), grad_k.to(k_dtype)
        grad_w = dw_cols.view(batch, heads, padded, k_len)[:, :, :dim].sum(dim=(0, 3))
        grad_w = grad_w.to(w_dtype)
        grad_v = dv_.view(batch, heads, t_k, dv).to(v_dtype)
        return grad_q, grad_k, grad_w, grad_v, None, None


def fused_additive_attention(
    query_proj: Tensor,
    key_proj: Tensor,
    v_weight: Tensor,
    values: Tensor,
    key_padding_mask: Tensor | None = None,
    *,
    block_m: int | None = None,
    block_n: int | None = None,
    block_a: int | None = None,
    precise: bool = False,
    num_warps: int = 4,
    backward_blocks: tuple[int, int] | None = None,
    num_warps_backward: int | None = None,
    key_splits: int | None = None,
) -> Tensor:
    """Additive attention context without materialising tanh; differentiable.

    Shapes are per head because the kernel never mixes heads, and the caller (AdditiveAttention)
    already split them: query_proj (B, H, T_q, a) = W_a s_i, key_proj (B, H, T_k, a) = U_a h_j
    + b, v_weight (H, a) = v_a per head, values (B, H, T_k, dv), key_padding_mask (B, T_k)
    bool with True = padding (shared by all heads). Returns the context (B, H, T_q, dv) in
    values' dtype; the arithmetic is float32 whatever the input dtype.

    `precise=True` uses an exact tanh (and IEEE fp32 dots) instead of the hardware
    `tanh.approx.f32` (rel. error ~1e-3..1e-4) and TF32 dots; the interpreter always does.
    Block sizes default to 32 queries x 32 keys (a in steps of 8, 4 warps) on a GPU and
    16 x 16 in the interpreter, where every element costs Python time; `block_a` must be a
    power of two (a 3-D tile axis). The
    backward has its own `backward_blocks` (BLOCK_M, BLOCK_N), default (128, 64) with 4 warps
    on a GPU: larger query blocks mean fewer dk/dw atomics per key. Both defaults were the
    fastest of those timed on an H200 at T=16384 (NOTES.md, v6b; at T=4096 a 256x64
    backward with 8 warps was faster, 5.6 against 8.6 ms). Default blocks (not given ones)
    shrink until they fit the GPU's shared memory (`fit_blocks`; many values per head).

    `key_splits=S` splits the keys into S ranges, each its own program (flash-decoding), and
    merges their partial softmaxes in PyTorch: S times the programs when B*H*T_q/BLOCK_M
    alone cannot fill the GPU. By default `auto_key_splits` picks S on a GPU (NOTES.md, v5
    and v7) and the interpreter uses 1.
    """
    _check_inputs(query_proj, key_proj, v_weight, values, key_padding_mask)
    on_gpu = query_proj.device.type == "cuda"
    default_forward, default_backward = block_m is None and block_n is None, not backward_blocks
    block_m = block_m or (32 if on_gpu else 16)
    block_n = block_n or (32 if on_gpu else 16)
    block_a = block_a or (8 if on_gpu else 4)
    bwd_m, bwd_n = backward_blocks or ((128, 64) if on_gpu else (block_m, block_n))
    if on_gpu and not INTERPRETED:  # default blocks shrink to fit the GPU; given ones do not
        limit, block_dv = shared_memory_limit(query_proj.device), _block_dv(values.shape[-1])
        if default_forward:
            block_m, block_n = _fitted(block_m, block_n, block_dv, False, limit)
        if default_backward:
            bwd_m, bwd_n = _fitted(bwd_m, bwd_n, block_dv, True, limit)
    num_warps_backward = num_warps_backward or (4 if on_gpu else 1)
    sizes = (("block_m", block_m), ("block_n", block_n), ("backward_blocks", bwd_m))
    for name, size in (*sizes, ("backward_blocks", bwd_n)):
        if size & (size - 1) or size < (16 if on_gpu else 1):
            raise ValueError(f"{name}={size} must be a power of two (>= 16 on a GPU)")
    if block_a <= 0 or block_a & (block_a - 1):
        raise ValueError(f"block_a={block_a} must be a power of two")
    if key_splits is None:
        key_splits = 1
        if on_gpu and not INTERPRETED:
            batch, heads, t_q = query_proj.shape[:3]
            programs = batch * heads * triton.cdiv(t_q, block_m)
            sms = torch.cuda.get_device_properties(query_proj.device).multi_processor_count
            key_splits = auto_key_splits(programs, sms, triton.cdiv(key_proj.shape[2], block_n))
    if key_splits < 1:
        raise ValueError(f"key_splits must be at least 1, got {key_splits}")
    precise = precise or not on_gpu or INTERPRETED
    config = (
        block_m, block_n, block_a, precise, num_warps, bwd_m, bwd_n, num_warps_backward,
        key_splits,
    )  # fmt: skip
    return _FusedAdditiveAttention.apply(
        query_proj, key_proj, v_weight, values, key_padding_mask, config
    )
