"""Figures for the report (matplotlib, Agg), returned as inline PNG data URIs so the HTML
report is one self-contained file that opens offline."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

COLORS = {"additive": "#1f77b4", "dot": "#d62728", "general": "#2ca02c", "scaled_dot": "#9467bd"}


def _color(name: str) -> str:
    return COLORS.get(name, "#7f7f7f")


def to_data_uri(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def learning_curves(curves: pd.DataFrame, dataset: str, ylabel: str) -> str:
    """Validation metric per epoch: one thin line per seed, coloured by attention."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for (attention, seed), g in curves[curves["dataset"] == dataset].groupby(["attention", "seed"]):
        label = attention if seed == curves["seed"].min() else None
        ax.plot(g["epoch"], g["value"], color=_color(attention), alpha=0.8, label=label, marker=".")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
    ax.set_ylabel(ylabel)
    ax.set_title(f"{dataset}: {ylabel} per epoch (every seed)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


def optimisation_history(trials: pd.DataFrame, dataset: str, metric: str) -> str:
    """Each trial's best value and the best so far, per attention variant."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    column = f"metrics.best/{metric}"
    data = trials[trials["dataset"] == dataset].sort_values("trial")
    lower_better = metric.endswith("loss")
    for attention, g in data.groupby("attention"):
        values = g[column] if column in g else pd.Series(dtype=float)
        ax.scatter(g["trial"], values, color=_color(attention), s=18, alpha=0.7)
        best = values.cummin() if lower_better else values.cummax()
        ax.step(g["trial"], best, where="post", color=_color(attention), label=attention)
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.set_title(f"{dataset}: Optuna optimisation history")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


def by_length(rows: pd.DataFrame, dataset: str, metric: str) -> str:
    """Mean metric per source-length bucket, per attention (bars side by side)."""
    data = rows[rows["dataset"] == dataset]
    table = data.groupby(["lo", "bucket", "attention"])[metric].mean().unstack("attention")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    table.droplevel("lo").plot.bar(
        ax=ax, color=[_color(c) for c in table.columns], rot=0, width=0.8
    )
    ax.set_xlabel("source length (subwords, incl. EOS)")
    ax.set_ylabel(metric)
    ax.set_title(f"{dataset}: {metric} by source length")
    ax.grid(alpha=0.3, axis="y")
    return to_data_uri(fig)


def attention_maps(maps: dict[str, dict[str, Any]]) -> str:
    """The same sentence decoded by each variant: weight heatmaps side by side."""
    names = list(maps)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        m = maps[name]
        ax.imshow(m["weights"], cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(m["source"])), m["source"], rotation=90, fontsize=7)
        ax.set_yticks(range(len(m["output"])), m["output"], fontsize=7)
        ax.set_title(name, color=_color(name))
    fig.tight_layout()
    return to_data_uri(fig)


def bench_figure(rows: pd.DataFrame, mode: str = "forward") -> plt.Figure:
    """Throughput (tokens/s) and peak memory vs length, log-log, one line per implementation;
    solid lines additive, dashed multiplicative. Cells that did not run are left out."""
    ok = rows[(rows["status"] == "ok") & (rows["mode"] == mode)]
    fig, (speed, mem) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, g in ok.groupby("implementation", sort=False):
        g = g.sort_values("length")
        style = "-" if g["family"].iloc[0] == "additive" else "--"
        speed.plot(g["length"], g["tokens_per_s"], style, marker="o", label=name)
        if "peak_memory_mb" in g and g["peak_memory_mb"].notna().any():
            mem.plot(g["length"], g["peak_memory_mb"], style, marker="o", label=name)
    device = rows["device"].iloc[0] if not rows.empty else ""
    for ax, ylabel, title in (
        (speed, "tokens (queries) / s", f"{mode}: throughput on {device}"),
        (mem, "peak memory (MB)", f"{mode}: peak memory on {device}"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length (T_q = T_k)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
