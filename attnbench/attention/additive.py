"""Additive attention, Bahdanau et al. 2015, appendix A.1.2:

    e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)

here `score = v(tanh(query_proj(q) + key_proj(k)))` with query_proj = W_a (no bias),
key_proj = U_a (with the bias the reference implementations carry), v = v_a.

`forward(..., need_weights=False)` returns (context, None) and may skip the reference path
(`fused_path` decides): on CUDA with triton installed, from `CUDA_KERNEL_MIN_QUERIES`
queries and `CUDA_KERNEL_MIN_WORK` tanh per call, the fused Triton kernel
(kernels/triton_additive.py, differentiable, tanh never stored); on CPU, when no gradient is
needed and the problem is large enough to pay for it (`CPU_KERNEL_MIN_WORK`), the CPU
inference kernel (kernels/cpu_additive.py; its backend: `CPU_KERNEL_BACKEND`). Both compute
the same formula; anything else (other devices or dtypes, CPU training, small problems) takes
the reference path below. There, with the Inductor backend (not the default), float32 CPU
calls from `CPU_SCORES_MIN_WORK` tanh take their scores from kernels/cpu_scores.py, which
never keeps the (B, H, T_q, T_k, a) tanh and trains 1.1-1.3x faster (`score`). On
CUDA the kernel uses the hardware tanh.approx and TF32 dots only for 16-bit inputs (mixed
precision, where they are below the inputs' own rounding); float32 inputs get its precise
mode, so training in float32 keeps float32 results.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbench.attention.base import Attention, merge_heads, split_heads
from attnbench.settings import cpu_kernel_backend

#: dtypes each fused path computes in (both accumulate in float32 or better)
_CUDA_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_CPU_DTYPES = (torch.float32, torch.float64)
#: the CPU kernel only from this many tanh per (batch row, head), T_q * T_k * a: it won at
#: every measured shape from here (2.0-5.8x) and mostly lost below, e.g. at decoder steps over
#: short sources, where its per-block overhead dominates
#: (reports/benchmarks/cpu/cpu_kernel_threshold.py; table in reports/benchmarks/README.md)
CPU_KERNEL_MIN_WORK = 2**18
#: where the CPU kernel computes its scores: "numpy", "inductor" or "auto" (Inductor for
#: float32 where it compiles, else NumPy; kernels/cpu_additive.py); None: what
#: ATTNBENCH_CPU_KERNEL_BACKEND says, NumPy by default (settings.py says why)
CPU_KERNEL_BACKEND: str | None = None
#: the Inductor-fused CPU scores only from this many tanh per call, B*H*T_q*T_k*a. In two
#: runs of reports/benchmarks/cpu/cpu_scores_threshold.py (Zen 3 host) every shape from here
#: won, forward + backward (1.07-1.34x at 2**20, up to 6x for whole sentences); at 2**19 one
#: decoder step of six lost (0.74x): the compiled functions' fixed cost per call (guards,
#: dispatch: ~0.3 ms each way) is about what they save there
CPU_SCORES_MIN_WORK = 2**20
#: the Triton kernel only from this many queries: each of its programs computes a tile of 32
#: queries (the default block), so a decoder step (T_q = 1) would waste 31/32 of the kernel's
#: tanh, and the (B, T_q, T_k, a) tensor it avoids is small there anyway
CUDA_KERNEL_MIN_QUERIES = 32
#: ... and only from this many tanh per call (B*H*T_q*T_k*a), keyed by (gradient needed,
#: float32 inputs). Float32 inputs run the kernel's precise mode, 16-bit ones (AMP) its
#: tanh.approx. Measured on an H200 (reports/benchmarks/README.md, GPU section): forward
#: only, the kernel's fixed cost (~0.5-0.7 ms of layout copies and launches) loses below
#: ~2**26-2**28 and it wins 3-9x from 2**29. With a gradient, 16-bit: 2.7x at 2**30 (B=H=1,
#: a=64) and 5x at 2**33 (the benchmark's T=4096). Float32 with a gradient: 0.13-0.24x the
#: reference at every size measured up to 2**31 (B=32, a=256), so there the kernel is kept
#: for calls whose reference tensors, 4 * 2**33 bytes each, would not fit beside the model
CUDA_KERNEL_MIN_WORK = {
    (False, False): 2**26,
    (False, True): 2**26,
    (True, False): 2**30,
    (True, True): 2**33,
}


@contextlib.contextmanager
def cuda_kernel_from(tanh_per_call: int) -> Iterator[None]:
    """Inside the block every CUDA call takes the fused kernel from `tanh_per_call` tanh,
    gradient or not (0: always; 2**62: never). For the GPU checks and timings that compare
    the kernel with the reference path through the module, as the models call it."""
    saved = CUDA_KERNEL_MIN_WORK.copy()
    CUDA_KERNEL_MIN_WORK.update(dict.fromkeys(saved, tanh_per_call))
    try:
        yield
    finally:
        CUDA_KERNEL_MIN_WORK.update(saved)


def _cpu_kernel():
    """The CPU inference kernel with `CPU_KERNEL_BACKEND`, or None where it does not import."""
    try:
        from attnbench.attention.kernels.cpu_additive import additive_attention_cpu
    except ImportError:
        return None
    return partial(additive_attention_cpu, backend=CPU_KERNEL_BACKEND or cpu_kernel_backend())


def _cuda_kernel():
    """The fused Triton kernel, or None where triton or CUDA is missing."""
    from attnbench.attention.kernels import triton_available

    if not triton_available():
        return None
    try:
        from attnbench.attention.kernels.triton_additive import fused_additive_attention
    except ImportError:
        return None
    return fused_additive_attention


def fused_path(
    device: str,
    dtypes: set[torch.dtype],
    needs_grad: bool,
    queries: int,
    tanh_per_row_and_head: int,
    rows_and_heads: int = 1,
) -> str | None:
    """The kernel one call uses: "cuda", "cpu", or None for the reference path.

    The CPU kernel's payoff depends on the work per (batch row, head), which it runs one at a
    time; the GPU kernel's on the whole call's, which it spreads over the device.
    """
    if device == "cuda":
        work = tanh_per_row_and_head * rows_and_heads
        usable = dtypes <= set(_CUDA_DTYPES) and queries >= CUDA_KERNEL_MIN_QUERIES
        threshold = CUDA_KERNEL_MIN_WORK[needs_grad, dtypes <= {torch.float32}]
        return "cuda" if usable and work >= threshold else None
    if device != "cpu" or len(dtypes) != 1 or not dtypes <= set(_CPU_DTYPES):
        return None
    if needs_grad:
        return None  # the CPU kernel has no backward
    return "cpu" if tanh_per_row_and_head >= CPU_KERNEL_MIN_WORK else None


def cpu_scores_apply(device: str, dtypes: set[torch.dtype], tanh_per_call: int) -> bool:
    """Whether a score call takes the Inductor-fused CPU scores (kernels/cpu_scores.py).

    Float32 only (its tanh is float32-accurate), from `CPU_SCORES_MIN_WORK` tanh, and only
    where the CPU kernel backend (`CPU_KERNEL_BACKEND`, else ATTNBENCH_CPU_KERNEL_BACKEND)
    resolves to Inductor: the compile costs each process seconds, so NumPy, the default,
    keeps training on the reference formula.
    """
    if device != "cpu" or dtypes != {torch.float32} or tanh_per_call < CPU_SCORES_MIN_WORK:
        return False
    backend = CPU_KERNEL_BACKEND or cpu_kernel_backend()
    if backend == "numpy":
        return False
    from attnbench.attention.kernels.cpu_additive import resolve_backend

    return resolve_backend(backend, torch.float32) == "inductor"


class AdditiveAttention(Attention):
    """Bahdanau attention. `chunk_size` bounds memory on long inputs.

    The naive score builds a (B, H, T_q, T_k, A/H) tensor; with `chunk_size=c` the keys are
    scored c at a time, so at most (B, H, T_q, c, A/H) exists at once. Results are equal.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        attn_dim: int | None = None,
        num_heads: int = 1,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(query_dim, key_dim, num_heads)
        attn_dim = query_dim if attn_dim is None else attn_dim
        if attn_dim <= 0 or attn_dim % num_heads:
            raise ValueError(f"attn_dim={attn_dim} must be positive and divisible by num_heads")
        if chunk_size is not None and chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.attn_dim = attn_dim
        self.chunk_size = chunk_size
        self.query_proj = nn.Linear(query_dim, attn_dim, bias=False)
        self.key_proj = nn.Linear(key_dim, attn_dim, bias=True)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def prepare_keys(self, keys: Tensor) -> Tensor:
        """keys (B, T_k, D_k) -> U_a h_j + b, (B, T_k, A)."""
        return self.key_proj(keys)

    def score(self, query: Tensor, prepared_keys: Tensor) -> Tensor:
        """query (B, T_q, D_q), prepared_keys (B, T_k, A) -> scores (B, H, T_q, T_k).

        On CPU in float32 the Inductor-fused scores where `cpu_scores_apply` says they pay,
        the reference formula otherwise; both differentiable.
        """
        q, k = self._score_inputs(query, prepared_keys)
        dtypes = {q.dtype, k.dtype, self.v.weight.dtype}
        if cpu_scores_apply(q.device.type, dtypes, q.numel() * k.shape[2]):  # B*H*T_q*a*T_k
            return self._fused_scores(q, k)
        return self._reference_scores(q, k)

    def _score_inputs(self, query: Tensor, prepared_keys: Tensor) -> tuple[Tensor, Tensor]:
        """-> W_a s (B, H, T_q, a) and U_a h + b (B, H, T_k, a), per head."""
        heads = self.num_heads
        return split_heads(self.query_proj(query), heads), split_heads(prepared_keys, heads)

    def _reference_scores(self, q: Tensor, k: Tensor) -> Tensor:
        """The formula in PyTorch operations, `chunk_size` keys at a time: (B, H, T_q, T_k)."""
        q, k = q.unsqueeze(3), k.unsqueeze(2)  # (B, H, T_q, 1, a), (B, H, 1, T_k, a)
        t_k = k.shape[3]
        step = t_k if self.chunk_size is None else self.chunk_size
        chunks = [
            self._v_dot(torch.tanh(q + k[:, :, :, start : start + step]))
            for start in range(0, t_k, step)
        ]  # each (B, H, T_q, c)
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=-1)

    def _fused_scores(self, q: Tensor, k: Tensor) -> Tensor:
        """The same scores from kernels/cpu_scores.py: no (B, H, T_q, T_k, a) tensor kept."""
        from attnbench.attention.kernels.cpu_scores import fused_additive_scores

        return fused_additive_scores(q, k, self.v.weight.view(self.num_heads, -1))

    def _v_dot(self, hidden: Tensor) -> Tensor:
        """hidden (B, H, T_q, c, a) -> v_a^T hidden per head, (B, H, T_q, c).

        One head: one matrix-vector product over all B*T_q*c rows. A matmul with a (a, 1)
        weight broadcast over (B, H, T_q) runs as B*H*T_q tiny batched products instead: a
        decoder step's whole attention call (B=16, T_k=64-128, a=512) took 1.14-1.38x as long
        that way on CPU, forward + backward (reports/benchmarks/README.md). Several heads keep
        the batched product: each has its own slice of v.
        """
        if self.num_heads == 1:
            return F.linear(hidden, self.v.weight).squeeze(-1)
        v = self.v.weight.view(self.num_heads, 1, self.attn_dim // self.num_heads, 1)
        return torch.matmul(hidden, v).squeeze(-1)  # v: (H, 1, a, 1)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        key_padding_mask: Tensor | None = None,
        prepared_keys: Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """As `Attention.forward`; with `need_weights=False` a fused kernel where one applies."""
        if not need_weights:
            if prepared_keys is None:
                prepared_keys = self.prepare_keys(keys)
            kernel = self._fused_kernel(query, prepared_keys, values)
            if kernel is not None:
                return self._fused_context(kernel, query, prepared_keys, values, key_padding_mask)
        return super().forward(
            query, keys, values, key_padding_mask, prepared_keys, need_weights=need_weights
        )

    def _fused_kernel(self, query: Tensor, prepared_keys: Tensor, values: Tensor):
        """The kernel that computes this call's context, or None for the reference path."""
        tensors = [query, prepared_keys, values, *self.parameters()]
        path = fused_path(
            query.device.type,
            {t.dtype for t in (query, prepared_keys, values, self.v.weight)},
            needs_grad=torch.is_grad_enabled() and any(t.requires_grad for t in tensors),
            queries=query.shape[1],
            tanh_per_row_and_head=query.shape[1] * prepared_keys.shape[1]
            * (self.attn_dim // self.num_heads),
            rows_and_heads=query.shape[0] * self.num_heads,
        )  # fmt: skip
        kernel = {"cuda": _cuda_kernel, "cpu": _cpu_kernel}[path]() if path else None
        if path == "cuda" and kernel is not None:
            from attnbench.attention.kernels.triton_additive import value_dim_fits

            if not value_dim_fits(values.shape[-1] // self.num_heads, values.device):
                return None  # too many values per head for the GPU's shared memory
        return kernel

    def _fused_context(
        self,
        kernel,
        query: Tensor,
        prepared_keys: Tensor,
        values: Tensor,
        key_padding_mask: Tensor | None,
    ) -> tuple[Tensor, None]:
        """Split heads, call `kernel` on per-head tensors, merge: context (B, T_q, D_v)."""
        heads = self.num_heads
        v = self.value_heads(values)  # (B, H, T_k, D_v / H)
        q = split_heads(self.query_proj(query), heads)  # (B, H, T_q, a)
        k = split_heads(prepared_keys, heads)  # (B, H, T_k, a)
        w = self.v.weight.view(heads, self.attn_dim // heads)  # (H, a)
        if q.is_cuda:  # float32 inputs get float32 results: exact tanh, IEEE dots (not TF32)
            kernel = partial(kernel, precise=q.dtype == torch.float32)
        return merge_heads(kernel(q, k, w, v, key_padding_mask)), None
