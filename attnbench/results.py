"""MLflow runs -> tidy pandas frames: what every report is built from (never live objects)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from attnbench.tracking import Tracker

FINAL = "final"


def final_runs(tracker: Tracker, parent_run_id: str | None = None) -> pd.DataFrame:
    """One row per final (per-seed) run: tags as columns, metrics as `metrics.<key>`."""
    filters = ["tags.kind = 'final'", "attributes.status = 'FINISHED'"]
    if parent_run_id:
        filters.append(f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    runs = tracker.search_runs(" and ".join(filters))
    if runs.empty:
        return runs
    runs = runs.rename(columns=lambda c: c.removeprefix("tags."))
    runs["seed"] = pd.to_numeric(runs["seed"], errors="coerce")
    return runs


def test_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """Tidy scores: dataset, split, attention, seed, metric, value (one row per number)."""
    columns = ["dataset", "split", "attention", "seed", "metric", "value"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    metric_cols = [c for c in runs.columns if c.startswith("metrics.test/")]
    long = runs.melt(
        id_vars=["dataset", "attention", "seed"], value_vars=metric_cols, var_name="key"
    ).dropna(subset=["value"])
    parts = long["key"].str.removeprefix("metrics.test/").str.rsplit("/", n=1, expand=True)
    long["split"], long["metric"] = parts[0], parts[1]
    return long[columns].reset_index(drop=True)


def mean_ci(values: pd.Series, level: float = 0.95) -> dict[str, float]:
    """Mean, sample std and the t-interval half-width over seeds (nan for one seed)."""
    n = int(values.count())
    mean = float(values.mean()) if n else math.nan
    std = float(values.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std, "ci95": half}


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, split, attention and metric: mean +- std over seeds with 95% intervals."""
    if scores.empty:
        return pd.DataFrame(
            columns=["dataset", "split", "attention", "metric", "n", "mean", "std", "ci95"]
        )
    grouped = scores.groupby(["dataset", "split", "attention", "metric"])["value"]
    keys = ["dataset", "split", "attention", "metric"]
    rows = [{**dict(zip(keys, key, strict=True)), **mean_ci(g)} for key, g in grouped]
    return pd.DataFrame(rows)


def save_parquet(frames: dict[str, pd.DataFrame], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in frames.items():
        path = folder / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        paths[name] = path
    return paths


def runs_summary(tracker: Tracker, parent_run_id: str | None = None) -> dict[str, Any]:
    runs = final_runs(tracker, parent_run_id)
    scores = test_scores(runs)
    return {"runs": runs, "scores": scores, "summary": summarise(scores)}


# -- whole pipeline runs -----------------------------------------------------------------


def latest_pipeline_run(tracker: Tracker) -> str | None:
    """The id of the most recent pipeline (parent) run, or None when there is none."""
    parents = tracker.search_runs("tags.kind = 'pipeline'")
    if parents.empty:
        return None
    return str(parents.sort_values("start_time").iloc[-1]["run_id"])


def children(tracker: Tracker, parent_run_id: str, kind: str) -> pd.DataFrame:
    """Child runs of one kind ("trial", "final", "bench") of a pipeline run, tags unprefixed."""
    runs = tracker.search_runs(
        f"tags.kind = '{kind}' and tags.`mlflow.parentRunId` = '{parent_run_id}'"
    )
    if runs.empty:
        return runs
    runs = runs.rename(columns=lambda c: c.removeprefix("tags."))
    if "seed" in runs:
        runs["seed"] = pd.to_numeric(runs["seed"], errors="coerce")
    if "trial" in runs:
        runs["trial"] = pd.to_numeric(runs["trial"], errors="coerce")
    return runs


def curves(tracker: Tracker, runs: pd.DataFrame, key: str) -> pd.DataFrame:
    """Tidy per-epoch metric curves: dataset, attention, seed, epoch, value."""
    rows = []
    for _, run in runs.iterrows():
        for step, value in tracker.metric_history(run["run_id"], key):
            rows.append(
                {"dataset": run["dataset"], "attention": run["attention"], "seed": run["seed"],
                 "epoch": step, "value": value}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=["dataset", "attention", "seed", "epoch", "value"])


def json_artifacts(tracker: Tracker, runs: pd.DataFrame, path: str) -> dict[str, Any]:
    """run id -> the JSON artifact at `path` (runs without it are left out)."""
    return {
        run_id: tracker.load_json_artifact(run_id, path)
        for run_id in runs["run_id"]
        if tracker.has_artifact(run_id, path)
    }
