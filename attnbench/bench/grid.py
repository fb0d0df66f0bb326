"""The benchmark grid: implementation x length x batch x dimension x mode, in priority order.

The order matters because a time budget may cut the run short: cells a headline claim rests on
(the forward pass at the longest lengths) run first, then the other lengths, the full-model
modes, and the backward pass last.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from attnbench.bench.implementations import REGISTRY, implementations
from attnbench.errors import UserError

ATTENTION_MODES = ("forward", "backward")
MODEL_MODES = ("model",)


@dataclass(frozen=True)
class Cell:
    """One configuration to time. T_q = T_k = `length`; `dim` is per head (a or d), and the
    value dimension equals it."""

    mode: str
    implementation: str
    length: int
    batch: int
    heads: int
    dim: int
    dtype: str
    device: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "family": REGISTRY[self.implementation].family}


@dataclass
class GridSpec:
    device: str
    lengths: list[int]
    batches: list[int]
    dims: list[int]
    heads: int
    dtype: str
    modes: list[str]
    #: the backward pass only up to this length (it needs far more memory and time)
    max_backward_length: int
    names: list[str] | None = None
    families: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


DEFAULTS: dict[str, dict[str, Any]] = {
    "cpu": {
        "lengths": [64, 256, 1024, 4096],
        "batches": [1],
        "dims": [64],
        "heads": 1,
        "dtype": "float32",
        "modes": ["forward", "model", "backward"],
        "max_backward_length": 1024,
    },
    "cuda": {
        "lengths": [64, 256, 1024, 4096, 16384],
        "batches": [2],
        "dims": [64],
        "heads": 4,
        "dtype": "bfloat16",
        "modes": ["forward", "model", "backward"],
        "max_backward_length": 16384,
    },
}


def default_spec(device: str, **overrides: Any) -> GridSpec:
    """The default grid for `device`, with any non-None override applied."""
    values = {**DEFAULTS[device], **{k: v for k, v in overrides.items() if v is not None}}
    return GridSpec(device=device, **values)


def parse_ints(text: str, option: str) -> list[int]:
    """'64,256,1024' -> [64, 256, 1024]; anything else is a one-line UserError."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise UserError(
            f"{option} must be comma-separated positive integers like 64,256,1024; got {text!r}"
        )
    return sorted(set(values))


def headline_lengths(lengths: list[int]) -> set[int]:
    """The lengths the targets are stated at: >= 4096, or the longest when all are shorter."""
    long = {n for n in lengths if n >= 4096}
    return long or {max(lengths)}


def attention_cells(spec: GridSpec) -> list[Cell]:
    """Every attention cell of the grid, most important first."""
    impls = implementations(spec.device, spec.names, spec.families)
    headline = headline_lengths(spec.lengths)
    cells: list[tuple[tuple[int, int, bool], Cell]] = []
    for mode in ATTENTION_MODES:
        if mode not in spec.modes:
            continue
        for impl in impls:
            if mode not in impl.modes:
                continue
            for length in spec.lengths:
                if mode == "backward" and length > spec.max_backward_length:
                    continue
                for batch in spec.batches:
                    for dim in spec.dims:
                        cell = Cell(
                            mode,
                            impl.name,
                            length,
                            batch,
                            spec.heads,
                            dim,
                            spec.dtype,
                            spec.device,
                        )
                        tier = (0 if length in headline else 1) + (3 if mode == "backward" else 0)
                        # torch.compile compiles per shape: last in its tier, so a tight
                        # budget spends its time on the other implementations first
                        cells.append(((tier, length, impl.name == "compiled"), cell))
    return [cell for _, cell in sorted(cells, key=lambda pair: pair[0])]
