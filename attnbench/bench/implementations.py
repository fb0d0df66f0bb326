"""The one registry of attention implementations the benchmark times.

Each entry says which family it computes (additive or multiplicative: the reference it must
equal), where it runs, which modes it supports (the CPU fast path is inference only), and how
to build a callable `fn(problem) -> context (B, H, T_q, dv)` for a given shape. Entries reuse
the library's own modules (`AdditiveAttention`, `ScaledDotAttention`) and kernels rather than
copies of their formulas, so the benchmark times what the models run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbench.attention.additive import AdditiveAttention
from attnbench.attention.base import Attention, merge_heads, split_heads
from attnbench.attention.multiplicative import ScaledDotAttention
from attnbench.bench.problem import Problem, Shape

Kernel = Callable[[Problem], Tensor]
MODES = ("forward", "backward")

#: pass need_weights=False where Attention.forward has it: the benchmark needs no weights
_NO_WEIGHTS = (
    {"need_weights": False}
    if "need_weights" in inspect.signature(Attention.forward).parameters
    else {}
)


@dataclass(frozen=True)
class Implementation:
    name: str
    family: str  # "additive" | "multiplicative"
    build: Callable[[Shape], Kernel]
    devices: frozenset[str]
    modes: frozenset[str] = frozenset(MODES)
    #: whether it honours the key padding mask (if not, it is checked and timed without one)
    masked: bool = True
    #: None when usable here, else why not (an import that failed, no Triton, ...)
    unavailable: Callable[[], str | None] = field(default=lambda: None)
    description: str = ""


REGISTRY: dict[str, Implementation] = {}


def register(impl: Implementation) -> Implementation:
    if impl.name in REGISTRY:
        raise ValueError(f"implementation '{impl.name}' is already registered")
    REGISTRY[impl.name] = impl
    return impl


# --- additive -------------------------------------------------------------------------------


class _ReferenceAdditive(AdditiveAttention):
    """AdditiveAttention on its reference path only: its `forward(need_weights=False)` and
    `score` would otherwise dispatch to the fused kernels, which are timed as implementations
    of their own."""

    def forward(self, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor | None]:
        return Attention.forward(self, *args, **kwargs)

    def score(self, query: Tensor, prepared_keys: Tensor) -> Tensor:
        return self._reference_scores(*self._score_inputs(query, prepared_keys))


class _FusedScoresAdditive(_ReferenceAdditive):
    """AdditiveAttention with its scores always from the Inductor-fused CPU function."""

    def score(self, query: Tensor, prepared_keys: Tensor) -> Tensor:
        return self._fused_scores(*self._score_inputs(query, prepared_keys))


def _additive_module(
    shape: Shape, chunk_size: int | None, module: type[AdditiveAttention] = _ReferenceAdditive
) -> AdditiveAttention:
    """The library's AdditiveAttention with W_a = identity: the inputs are already projected."""
    width = shape.heads * shape.dim
    att = module(width, width, attn_dim=width, num_heads=shape.heads)
    att.chunk_size = chunk_size
    att.query_proj = nn.Identity()  # type: ignore[assignment]
    return att


def _additive_call(att: AdditiveAttention, p: Problem) -> Tensor:
    """Run `att` on head-layout inputs; v_a comes from the problem (so it takes gradients)."""
    assert p.v_weight is not None
    params = {"v.weight": p.v_weight.reshape(1, -1)}
    query, keys, values = merge_heads(p.query), merge_heads(p.keys), merge_heads(p.values)
    args = (query, keys, values)
    kwargs = {"key_padding_mask": p.mask, "prepared_keys": keys, **_NO_WEIGHTS}
    context, _ = torch.func.functional_call(att, params, args, kwargs)
    return split_heads(context, p.query.shape[1])


def _materialised(shape: Shape) -> Kernel:
    return partial(_additive_call, _additive_module(shape, None))


#: keys scored at once by the chunked path: (B, H, T_q, 128, a) stays small
CHUNK_SIZE = 128


def _chunked(shape: Shape) -> Kernel:
    return partial(_additive_call, _additive_module(shape, min(CHUNK_SIZE, shape.length_k)))


def _compiled(shape: Shape) -> Kernel:
    return torch.compile(partial(_additive_call, _additive_module(shape, None)))


def _fused_scores(shape: Shape) -> Kernel:
    return partial(_additive_call, _additive_module(shape, None, _FusedScoresAdditive))


def _triton_unavailable() -> str | None:
    try:
        from attnbench.attention.kernels.triton_additive import triton_available
    except ImportError as exc:
        return f"no triton kernel module ({exc})"
    return None if triton_available() else "Triton with a CUDA GPU is not available"


def _triton(shape: Shape) -> Kernel:
    from attnbench.attention.kernels.triton_additive import fused_additive_attention

    def run(p: Problem) -> Tensor:
        return fused_additive_attention(p.query, p.keys, p.v_weight, p.values, p.mask)

    return run


def _cpu_kernel_unavailable() -> str | None:
    try:
        import attnbench.attention.kernels.cpu_additive  # noqa: F401
    except ImportError as exc:
        return f"no CPU kernel module ({exc})"
    return None


def _cpu_kernel(backend: str, shape: Shape) -> Kernel:
    from attnbench.attention.kernels.cpu_additive import additive_attention_cpu

    def run(p: Problem) -> Tensor:
        return additive_attention_cpu(
            p.query, p.keys, p.v_weight, p.values, p.mask, backend=backend
        )

    return run


# --- multiplicative -------------------------------------------------------------------------


def _matmul_softmax(shape: Shape) -> Kernel:
    width = shape.heads * shape.dim
    att = ScaledDotAttention(width, width, num_heads=shape.heads)

    def run(p: Problem) -> Tensor:
        keys = merge_heads(p.keys)
        # Attention.forward: the plain path (the module's own forward would take SDPA, which is
        # timed as an implementation of its own)
        context, _ = Attention.forward(
            att, merge_heads(p.query), keys, merge_heads(p.values), p.mask, **_NO_WEIGHTS
        )
        return split_heads(context, shape.heads)

    return run


def sdpa_mask(mask: Tensor) -> Tensor:
    """(B, T_k) padding mask (True = pad) -> SDPA's boolean attn_mask (B, 1, 1, T_k), True =
    take part."""
    return ~mask[:, None, None, :]


def _sdpa(shape: Shape) -> Kernel:
    def run(p: Problem) -> Tensor:
        return F.scaled_dot_product_attention(
            p.query, p.keys, p.values, attn_mask=sdpa_mask(p.mask)
        )

    return run


def _sdpa_flash(shape: Shape) -> Kernel:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def run(p: Problem) -> Tensor:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            return F.scaled_dot_product_attention(p.query, p.keys, p.values)

    return run


CPU, CUDA, BOTH = frozenset({"cpu"}), frozenset({"cuda"}), frozenset({"cpu", "cuda"})

register(
    Implementation(
        "materialised",
        "additive",
        _materialised,
        BOTH,
        description="AdditiveAttention: the whole (B, H, T_q, T_k, a) tanh tensor at once",
    )
)
register(
    Implementation(
        "chunked",
        "additive",
        _chunked,
        BOTH,
        description=f"AdditiveAttention(chunk_size={CHUNK_SIZE}): keys scored in chunks",
    )
)
register(
    Implementation(
        "compiled",
        "additive",
        _compiled,
        BOTH,
        description="torch.compile of the materialised formula (Inductor fuses it)",
    )
)
register(
    Implementation(
        "fused_scores",
        "additive",
        _fused_scores,
        CPU,
        description="AdditiveAttention's CPU training path (float32): scores fused by Inductor, "
        "backward recomputes the tanh",
    )
)
register(
    Implementation(
        "triton_fused",
        "additive",
        _triton,
        CUDA,
        unavailable=_triton_unavailable,
        description="fused Triton kernel, online softmax, never builds T_q x T_k x a",
    )
)
for name, backend, description in (
    ("cpu_fast", "numpy", "CPU inference path: tiled NumPy SIMD tanh on threads"),
    ("cpu_inductor", "inductor", "the CPU kernel with scores fused by Inductor (rational tanh)"),
):
    register(
        Implementation(
            name,
            "additive",
            partial(_cpu_kernel, backend),
            CPU,
            frozenset({"forward"}),
            unavailable=_cpu_kernel_unavailable,
            description=description,
        )
    )
register(
    Implementation(
        "matmul_softmax",
        "multiplicative",
        _matmul_softmax,
        BOTH,
        description="ScaledDotAttention: QK^T, masked softmax, times V",
    )
)
register(
    Implementation(
        "sdpa",
        "multiplicative",
        _sdpa,
        BOTH,
        description="torch.nn.functional.scaled_dot_product_attention with the padding mask",
    )
)
register(
    Implementation(
        "sdpa_flash_nomask",
        "multiplicative",
        _sdpa_flash,
        CUDA,
        masked=False,
        description="SDPA forced to FlashAttention-2, no mask (flash takes none): the speed bound",
    )
)

#: the baseline of each family in the LRA-style table (speed-ups are relative to it)
BASELINES = {"additive": "materialised", "multiplicative": "matmul_softmax"}


def check_implementation_names(names: list[str]) -> None:
    """One line naming the unknown ones and the choices (configs are checked before a run)."""
    unknown = sorted(set(names) - set(REGISTRY))
    if unknown:
        from attnbench.errors import UserError

        raise UserError(
            f"unknown implementation(s) {', '.join(unknown)}; choose from {', '.join(REGISTRY)}"
        )


def implementations(
    device: str, names: list[str] | None = None, families: list[str] | None = None
) -> list[Implementation]:
    """Registered implementations that run on `device`, optionally only `names`/`families`."""
    if names:
        check_implementation_names(names)
    return [
        impl
        for impl in REGISTRY.values()
        if device in impl.devices
        and (not names or impl.name in names)
        and (not families or impl.family in families)
    ]


def sdpa_backends(problem: Problem) -> dict[str, object]:
    """Which SDPA backend PyTorch picks for these inputs (with the padding mask), and on CUDA
    which backends accept them at all, probed one at a time with `sdpa_kernel`."""
    q, k, v, mask = problem.query, problem.keys, problem.values, sdpa_mask(problem.mask)
    out: dict[str, object] = {"chosen": "unknown", "working": []}
    try:  # a private helper, so guarded: it names the backend PyTorch's dispatcher would use
        from torch.nn.attention import SDPBackend

        choice = torch._fused_sdp_choice(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)
        out["chosen"] = SDPBackend(choice).name
    except Exception as exc:
        out["chosen"] = f"unknown ({type(exc).__name__})"
    if q.device.type == "cpu":
        chosen = out["chosen"]
        path = "flash-attention CPU kernel" if chosen == "FLASH_ATTENTION" else "math (unfused)"
        out["chosen"] = f"{chosen}: {path}" if chosen and "unknown" not in str(chosen) else chosen
        return out
    from torch.nn.attention import SDPBackend, sdpa_kernel

    working = []
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        backend = getattr(SDPBackend, name, None)
        if backend is None:
            continue
        try:
            with sdpa_kernel([backend]), torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            working.append(name)
        except RuntimeError:
            continue
    out["working"] = working
    return out
