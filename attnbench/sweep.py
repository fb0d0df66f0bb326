"""The attention-dimension sweep of Britz et al. (2017), Table 6: the grid, and the paired tests
behind each published claim.

Every cell is (variant, attention dimension A, seed) trained with one fixed configuration and no
tuning, so along a row of the table only A changes, and down a column only the score function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnbench.config import ExperimentConfig
from attnbench.errors import UserError

#: Britz et al. 2017, Table 6: WMT'15 En-De, newstest2013 BLEU, mean and std over runs.
#: "Mul" is Luong's general score with both sides projected to A, attnbench's `general`.
PUBLISHED: dict[str, dict[int, tuple[float, float]]] = {
    "general": {128: (22.03, 0.08), 256: (22.33, 0.28), 512: (21.78, 0.05), 1024: (18.22, 0.03)},
    "additive": {128: (22.23, 0.11), 256: (22.33, 0.04), 512: (22.47, 0.27), 1024: (22.10, 0.18)},
}


@dataclass(frozen=True)
class SweepCell:
    variant: str
    attn_dim: int
    seed: int

    @property
    def system(self) -> str:
        """The name a cell's outputs carry in significance tables, e.g. `general@1024`."""
        return f"{self.variant}@{self.attn_dim}"

    @property
    def leaf(self) -> str:
        return f"dim-{self.attn_dim}/seed-{self.seed}"


def sweep_cells(cfg: ExperimentConfig) -> list[SweepCell]:
    """variant x dimension x seed, smallest dimension first so partial sweeps fill rows."""
    if not cfg.sweep.attn_dims:
        raise UserError(
            f"config '{cfg.name}' has no sweep.attn_dims; use --preset britz-sweep or set "
            "sweep.attn_dims, e.g. --set 'sweep.attn_dims=[128,256]'"
        )
    for variant in cfg.benchmark.variants:
        for dim in cfg.sweep.attn_dims:
            _check_buildable(cfg, variant, dim)
    return [
        SweepCell(variant, dim, seed)
        for dim in cfg.sweep.attn_dims
        for variant in cfg.benchmark.variants
        for seed in cfg.benchmark.seeds
    ]


def _check_buildable(cfg: ExperimentConfig, variant: str, attn_dim: int) -> None:
    """Build each cell's attention before any training, so an impossible cell (a dimension the
    heads do not divide) is one line up front, not a failure after hours of other cells."""
    from attnbench.models import build_model_attention

    model = cfg.model.model_copy(update={"attention": variant, "attn_dim": attn_dim})
    try:
        build_model_attention(model)
    except (UserError, ValueError) as exc:
        raise UserError(f"sweep cell {variant}@{attn_dim} cannot be built: {exc}") from exc


def comparisons(cfg: ExperimentConfig) -> list[tuple[str, list[str]]]:
    """(baseline system, other systems) groups for paired tests, one group per baseline.

    Within each dimension every variant against `benchmark.baseline`; within each variant every
    dimension against the smallest; `scaled_dot` against `general` at each dimension. Together
    they cover each claim of the paper. Groups sharing a baseline are merged (one paired test
    per baseline and seed), so no comparison overwrites another.
    """
    dims, variants = sorted(cfg.sweep.attn_dims), cfg.benchmark.variants
    base = cfg.benchmark.baseline
    groups: dict[str, list[str]] = {}

    def add(baseline: str, others: list[str]) -> None:
        systems = groups.setdefault(baseline, [])
        systems += [o for o in others if o != baseline and o not in systems]

    if base in variants:
        for d in dims:
            add(f"{base}@{d}", [f"{v}@{d}" for v in variants if v != base])
    for v in variants:
        add(f"{v}@{dims[0]}", [f"{v}@{d}" for d in dims[1:]])
    if {"general", "scaled_dot"} <= set(variants):
        # Vaswani et al.'s fix, head to head with the unscaled score it fixes
        for d in dims:
            add(f"scaled_dot@{d}", [f"general@{d}"])
    return [(b, others) for b, others in groups.items() if others]


def sweep_significance(
    cfg: ExperimentConfig, split: str, run_dirs: dict[str, dict[int, Path]], hypotheses_file: str
) -> dict[str, Any]:
    """Paired bootstrap per comparison group and seed on one test split.

    run_dirs: system (`variant@A`) -> seed -> the final run's directory, which holds the
    decoded `hypotheses_file`. Returns {baseline: {seed: paired_significance output}}.
    """
    from attnbench.data.prepare import load_split
    from attnbench.evaluate import paired_significance

    refs = load_split(cfg.data, split).tgt
    out: dict[str, Any] = {}
    for baseline, others in comparisons(cfg):
        per_seed = {}
        for seed in cfg.benchmark.seeds:
            systems = {}
            for name in [baseline, *others]:
                path = run_dirs.get(name, {}).get(seed)
                if path is not None and (Path(path) / hypotheses_file).is_file():
                    text = (Path(path) / hypotheses_file).read_text(encoding="utf-8")
                    systems[name] = text.split("\n")[:-1]
            if baseline in systems and len(systems) > 1:
                per_seed[str(seed)] = paired_significance(
                    refs, systems, baseline, "bs", cfg.eval.bootstrap_samples
                )
        out[baseline] = per_seed
    return out
