"""The attention-dimension sweep report: Britz et al. (2017) Table 6 beside attnbench's own,
BLEU and the softmax mechanism vs dimension, and a sentence per published claim.

Built from MLflow only (the sweep's final runs carry an `attn_dim` tag; the paired tests are
the pipeline run's `significance/sweep.json`), so any past sweep can be re-reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from attnbench.bench.tables import markdown
from attnbench.report.html import ReportData, Section, render, repro_section
from attnbench.report.plots import _color, to_data_uri
from attnbench.report.significance import ALPHA, holm
from attnbench.sweep import PUBLISHED
from attnbench.tracking import Tracker

SIGNIFICANCE_ARTIFACT = "significance/sweep.json"


@dataclass
class SweepData:
    cells: pd.DataFrame  # one row per finished run: variant, attn_dim, seed, bleu, mechanism
    split: str | None
    significance: dict[str, Any]


def load_sweep(data: ReportData) -> SweepData:
    """Tidy cells of the sweep: the first test split's BLEU and the mechanism metrics."""
    finals = data.finals
    if finals.empty or "attn_dim" not in finals:
        return SweepData(pd.DataFrame(), None, {})
    finals = finals[finals["attn_dim"].notna()]
    splits = sorted(
        c.split("/")[1] for c in finals if c.startswith("metrics.test/") and c.endswith("/bleu")
    )
    preferred = [s for s in splits if s == "test_2016_flickr"]
    split = (preferred or splits or [None])[0]
    if split is None:
        return SweepData(pd.DataFrame(), None, {})
    cells = pd.DataFrame(
        {
            "variant": finals["attention"],
            "attn_dim": pd.to_numeric(finals["attn_dim"]).astype(int),
            "seed": finals["seed"],
            "bleu": finals[f"metrics.test/{split}/bleu"],
            "mean_abs_score": finals.get("metrics.mechanism/mean_abs_score"),
            "entropy": finals.get("metrics.mechanism/entropy"),
            "uniform_entropy": finals.get("metrics.mechanism/uniform_entropy"),
        }
    ).reset_index(drop=True)
    significance = {}
    if data.tracker.has_artifact(data.parent_run_id, SIGNIFICANCE_ARTIFACT):
        significance = data.tracker.load_json_artifact(data.parent_run_id, SIGNIFICANCE_ARTIFACT)
    return SweepData(cells, split, significance)


def _cell(mean: float, std: float, n: int | None = None) -> str:
    if math.isnan(mean):
        return "–"
    spread = "" if math.isnan(std) else f" ± {std:.2f}"
    return f"{mean:.2f}{spread}" + ("" if n is None else f" (n={n})")


def side_by_side(cells: pd.DataFrame) -> pd.DataFrame:
    """Rows: attention dimension; columns: published and attnbench mean ± std per variant."""
    stats = cells.groupby(["attn_dim", "variant"])["bleu"].agg(["mean", "std", "count"])
    dims = sorted(set(cells["attn_dim"]) | {d for v in PUBLISHED.values() for d in v})
    table: dict[str, list[str]] = {"attention dim": [str(d) for d in dims]}
    for variant, published in PUBLISHED.items():
        table[f"Britz {variant}"] = [_cell(*published[d]) if d in published else "–" for d in dims]
    for variant in sorted(cells["variant"].unique()):
        column = []
        for d in dims:
            if (d, variant) in stats.index:
                s = stats.loc[(d, variant)]
                column.append(_cell(s["mean"], s["std"], int(s["count"])))
            else:
                column.append("–")
        table[f"attnbench {variant}"] = column
    return pd.DataFrame(table)


def _paired(significance: dict[str, Any], baseline: str, system: str) -> list[tuple[float, float]]:
    """(system BLEU - baseline BLEU, p-value) per seed, from the stored paired bootstrap."""
    out = []
    for per_system in significance.get(baseline, {}).values():
        if system in per_system and baseline in per_system:
            diff = per_system[system]["bleu"]["score"] - per_system[baseline]["bleu"]["score"]
            out.append((diff, per_system[system]["bleu"]["p_value"]))
    return out


#: (BLEU difference, p, p the verdict uses) per seed
Pair = tuple[float, float, float]


def _holm(pairs: list[tuple[float, float]]) -> list[Pair]:
    """For a claim that significant differences support: p Holm-adjusted over its seeds'
    tests, so that each claim's chance of holding by luck stays at ALPHA."""
    adjusted = holm([1.0 if p is None else p for _, p in pairs])
    return [(d, p, a) for (d, p), a in zip(pairs, adjusted, strict=True)]


def _raw(pairs: list[tuple[float, float]]) -> list[Pair]:
    """For a claim that a significant difference refutes ("flat", "does not drop"): raw p,
    since a correction would make the claim hold more easily; both rules err towards
    'does not hold'."""
    return [(d, p, 1.0 if p is None else p) for d, p in pairs]


def _evidence(pairs: list[Pair]) -> str:
    adjusted = any(p != a for _, p, a in pairs)
    cells = ", ".join(f"{d:+.2f} (p={p:.3f}" + (f", Holm {a:.3f})" if adjusted else ")")
                      for d, p, a in pairs)  # fmt: skip
    return f"per seed, BLEU difference and paired-bootstrap p: {cells}" if pairs else ""


def _majority(pairs: list[Pair], sign: int) -> bool:
    """A majority of seeds show a significant difference in the direction `sign`."""
    hits = sum(1 for d, _, a in pairs if a < ALPHA and d * sign > 0)
    return bool(pairs) and hits * 2 > len(pairs)


def claims(sweep: SweepData) -> list[dict[str, str]]:
    """One plain sentence per published claim: holds here, does not hold, or cannot tell."""
    cells, sig = sweep.cells, sweep.significance
    dims = sorted(cells["attn_dim"].unique())
    variants = set(cells["variant"])
    out: list[dict[str, str]] = []
    if len(dims) < 2:
        return [
            {"claim": "All claims compare dimensions.", "verdict": "cannot tell: one dimension"}
        ]
    lo, hi = dims[0], dims[-1]
    means = cells.groupby(["variant", "attn_dim"])["bleu"].mean()

    def add(claim: str, holds: bool | None, evidence: str) -> None:
        verdict = {True: "holds here", False: "does not hold here", None: "cannot tell here"}
        out.append({"claim": claim, "verdict": verdict[holds], "evidence": evidence})

    if "additive" in variants:
        spread = means["additive"].max() - means["additive"].min()
        per_dim = [
            f"A={d} against A={lo}: "
            + _evidence(_raw(_paired(sig, f"additive@{lo}", f"additive@{d}")))
            for d in dims[1:]
        ]
        flat = spread < 1.0 or not any(
            _majority(_raw(_paired(sig, f"additive@{lo}", f"additive@{d}")), s)
            for d in dims[1:]
            for s in (1, -1)
        )
        add(
            "Britz et al.: additive attention is flat in the attention dimension.",
            flat,
            f"mean BLEU range over dimensions {spread:.2f}; " + "; ".join(per_dim),
        )
    if "general" in variants:
        pairs = _holm(_paired(sig, f"general@{lo}", f"general@{hi}"))
        add(
            f"Britz et al.: unscaled multiplicative attention (Mul = general) collapses at the "
            f"largest dimension ({hi} vs {lo}).",
            _majority(pairs, -1) if pairs else None,
            _evidence(pairs),
        )
    if {"general", "additive"} <= variants:
        pairs = _holm(_paired(sig, f"additive@{hi}", f"general@{hi}"))
        add(
            f"Britz et al.: at dimension {hi} additive attention beats unscaled multiplicative.",
            _majority(pairs, -1) if pairs else None,
            _evidence(pairs),
        )
    if {"general", "scaled_dot"} <= variants:
        pairs = _holm(_paired(sig, f"scaled_dot@{hi}", f"general@{hi}"))
        own = _raw(_paired(sig, f"scaled_dot@{lo}", f"scaled_dot@{hi}"))
        holds = (_majority(pairs, -1) and not _majority(own, -1)) if pairs and own else None
        add(
            f"Vaswani et al.: scaling by 1/sqrt(A) removes the collapse (scaled_dot beats general "
            f"at {hi} and does not drop significantly from {lo}).",
            holds,
            _evidence(pairs) + (f"; scaled_dot at {hi} against at {lo}: " + _evidence(own)
                                if own else ""),
        )  # fmt: skip
    return out


def _versus_dimension(
    cells: pd.DataFrame, column: str, ylabel: str, title: str, log_y: bool = False
) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for variant, g in cells.dropna(subset=[column]).groupby("variant"):
        s = g.groupby("attn_dim")[column].agg(["mean", "std"]).reset_index()
        ax.errorbar(s["attn_dim"], s["mean"], yerr=s["std"].fillna(0), marker="o", capsize=3,
                    color=_color(variant), label=variant)  # fmt: skip
    ax.set_xscale("log", base=2)
    if log_y:  # unscaled dot products grow by orders of magnitude over the others
        ax.set_yscale("log")
    ax.set_xlabel("attention dimension A")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return to_data_uri(fig)


def sweep_sections(data: ReportData) -> list[Section]:
    sweep = load_sweep(data)
    table = Section("britz", "Britz et al. (2017), Table 6, beside attnbench")
    mechanism = Section("mechanism", "Why: score size and attention entropy vs dimension")
    if sweep.cells.empty:
        table.missing = "No finished sweep runs (final runs with an attn_dim tag) in MLflow."
        mechanism.missing = table.missing
        return [table, mechanism]
    table.say(
        f"Published: WMT'15 En-De, newstest2013 BLEU, mean ± std over runs. attnbench: "
        f"{sweep.split} BLEU, mean ± std over seeds (n). Different data and model size, so "
        "compare the shape along each column, not the absolute numbers."
    )
    table.table(side_by_side(sweep.cells))
    table.figure(
        _versus_dimension(sweep.cells, "bleu", f"{sweep.split} BLEU", "BLEU vs attention dim"),
        "BLEU vs attention dimension, mean ± std over seeds",
    )
    verdicts = claims(sweep)
    for c in verdicts:
        table.say(f"{c['claim']} — {c['verdict']}. {c.get('evidence', '')}", "verdict")
    if not sweep.significance:
        table.say("The pipeline run holds no paired tests (significance/sweep.json).", "missing")
    mechanism.say(
        "Mean |raw score| per (target, source) pair and mean attention entropy per target token "
        "(nats), teacher-forced on validation pairs. A growing score with entropy falling "
        "towards 0 is a saturated softmax, Vaswani et al.'s explanation of the collapse."
    )
    for column, label in (("mean_abs_score", "mean |score|"), ("entropy", "entropy (nats)")):
        if sweep.cells[column].notna().any():
            mechanism.figure(
                _versus_dimension(
                    sweep.cells,
                    column,
                    label,
                    f"{label} vs attention dim",
                    log_y=column == "mean_abs_score",
                ),
                f"{label} vs attention dimension, mean ± std over seeds",
            )
        else:
            mechanism.say(f"No {label} was logged.", "missing")
    return [table, mechanism]


def write_sweep_html(tracker: Tracker, parent_run_id: str, folder: Path) -> Path:
    """Render index.html (and summary.md) of one sweep run into `folder`."""
    data = ReportData.load(tracker, parent_run_id)
    sections = sweep_sections(data)
    repro = repro_section(data)
    repro.code[0] = {"title": "Reproduce", "text": "attnbench sweep --config config.yaml"}
    sections.append(repro)
    title = f"{tracker.experiment}: attention dimension sweep (Britz et al. 2017)"
    path = render(data, title, sections, folder)
    sweep = load_sweep(data)
    if not sweep.cells.empty:
        sweep.cells.to_parquet(folder / "sweep.parquet", index=False)
        lines = [f"# {tracker.experiment}: attention dimension sweep", "",
                 markdown(side_by_side(sweep.cells)), ""]  # fmt: skip
        lines += [
            f"- {c['claim']} **{c['verdict']}**. {c.get('evidence', '')}" for c in claims(sweep)
        ]
        (folder / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
