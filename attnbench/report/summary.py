"""The headline Markdown summary: per dataset and split, each variant's scores over seeds."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.report.significance import ALPHA, comparisons
from attnbench.results import runs_summary, save_parquet
from attnbench.tracking import Tracker

METRICS = ("bleu", "chrf", "ter", "exact_match")


def _cell(row: pd.Series) -> str:
    if math.isnan(row["std"]):
        return f"{row['mean']:.2f} (n=1)"
    return f"{row['mean']:.2f} ± {row['std']:.2f} [±{row['ci95']:.2f}] (n={row['n']})"


def headline_tables(summary: pd.DataFrame) -> str:
    """Markdown: one table per dataset/split, one row per variant, one column per metric."""
    if summary.empty:
        return "_No finished final runs in MLflow for this pipeline run._\n"
    out = []
    for (dataset, split), block in summary.groupby(["dataset", "split"]):
        metrics = [m for m in METRICS if m in set(block["metric"])]
        out.append(f"### {dataset} / {split}\n")
        out.append("| attention | " + " | ".join(metrics) + " |")
        out.append("|---" * (len(metrics) + 1) + "|")
        for attention, rows in block.groupby("attention"):
            by_metric = rows.set_index("metric")
            cells = [_cell(by_metric.loc[m]) for m in metrics]
            out.append(f"| {attention} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def significance_tables(significance: dict[str, Any], baseline: str) -> str:
    """Markdown: per split, a table row per (variant, seed) test against the baseline, the raw
    and Holm-adjusted p side by side; significance judged on the adjusted p over the split's
    tests (attnbench.report.significance). Rows grouped by variant, so seeds that disagree on
    a direction stand next to each other."""
    out = []
    for split, per_seed in significance.items():
        tests = comparisons(per_seed, baseline).sort_values(["system", "seed"], kind="stable")
        if tests.empty:
            continue
        out.append(f"**{split}**: paired bootstrap per seed, Holm over {len(tests)} tests\n")
        out.append(f"| attention | seed | BLEU | {baseline} BLEU | difference | p | Holm p "
                   f"| significant at {ALPHA} |")  # fmt: skip
        out.append("|---|---|---|---|---|---|---|---|")
        for row in tests.itertuples():
            direction = "higher" if row.diff > 0 else "lower"
            verdict = f"yes, {direction}" if row.significant else "no"
            out.append(
                f"| {row.system} | {row.seed} | {row.score:.2f} | {row.baseline_score:.2f} "
                f"| {row.diff:+.2f} | {row.p:.4f} | {row.p_holm:.4f} | {verdict} |"
            )
        out.append("")
    return "\n".join(out) + "\n" if out else "_No significance results._\n"


def report_folder(reports_dir: Path, tracker: Tracker) -> Path:
    """reports/<experiment>/<UTC date>/: one folder per experiment and day."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    return Path(reports_dir) / tracker.experiment / stamp


def write_summary(
    tracker: Tracker,
    parent_run_id: str | None,
    reports_dir: Path,
    significance: dict[str, dict[str, Any]] | None = None,
    baseline: str = "additive",
    extra_sections: dict[str, str] | None = None,
) -> Path:
    """reports/<experiment>/<date>/summary.md (+ tidy parquet files beside it)."""
    frames = runs_summary(tracker, parent_run_id)
    folder = report_folder(reports_dir, tracker)
    save_parquet({"scores": frames["scores"], "summary": frames["summary"]}, folder)
    parts = [
        f"# {tracker.experiment}\n",
        f"Pipeline run `{parent_run_id}`; scores are mean ± std [95% t-interval] over seeds, "
        "sacreBLEU on detokenised output.\n",
        "## Test scores\n",
        headline_tables(frames["summary"]),
    ]
    for dataset, sig in (significance or {}).items():
        parts += [f"## Paired significance ({dataset})\n", significance_tables(sig, baseline)]
    for title, body in (extra_sections or {}).items():
        parts += [f"## {title}\n", body]
    path = folder / "summary.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
