"""Per-seed paired tests against the baseline, judged with Holm's correction per family.

A (dataset, split) with V variants and S seeds runs (V - 1) * S tests. At alpha = 0.05 each,
some would read "significant" by chance alone (with 9 independent tests, 37% of the time).
Holm's step-down method (Holm 1979) keeps the family-wise error rate at alpha whatever the
dependence between the tests, and rejects at least what Bonferroni rejects; the reports judge
significance on the adjusted p-values and show the raw ones beside them. statsmodels'
`multipletests(method="holm")` computes the same; five lines here spare the dependency.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

ALPHA = 0.05
COLUMNS = ["seed", "system", "score", "baseline_score", "diff", "p", "p_holm", "significant"]


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values in the input order: the k-th smallest becomes
    max over j <= k of (m - j + 1) p_(j), capped at 1, so the order of the p-values is kept."""
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: pvalues[i])):
        running = max(running, (m - rank) * pvalues[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def comparisons(
    per_seed: dict[str, dict[str, Any]], baseline: str, metric: str = "bleu"
) -> pd.DataFrame:
    """One row per (seed, system) tested against `baseline`, Holm-adjusted over all of them.

    per_seed: {seed: {system: {metric: {"score", "p_value", ...}}}}, the stored output of
    `attnbench.evaluate.paired_significance` per seed. diff = score - baseline_score;
    significant = p_holm < ALPHA. Systems without a p-value (the baseline) are left out.
    """
    rows = []
    for seed, systems in per_seed.items():
        if baseline not in systems:
            continue
        base = systems[baseline][metric]["score"]
        for system, metrics in systems.items():
            p = metrics[metric]["p_value"]
            if system == baseline or p is None:
                continue
            score = metrics[metric]["score"]
            rows.append({"seed": str(seed), "system": system, "score": score,
                         "baseline_score": base, "diff": score - base, "p": p})  # fmt: skip
    frame = pd.DataFrame(rows, columns=COLUMNS[:-2])
    frame["p_holm"] = holm(frame["p"].tolist())
    frame["significant"] = frame["p_holm"] < ALPHA
    return frame
