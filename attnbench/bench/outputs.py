"""Write one run to a folder: rows.parquet (tidy, one row per cell), limits.parquet,
report.md, meta.json and <mode>.png plots. Renderers read these files, never live objects."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from attnbench.bench.markdown import report
from attnbench.bench.runner import BenchResult
from attnbench.bench.targets import evaluate


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows as a frame that parquet accepts (mixed-type columns become strings)."""
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        kinds = {type(v) for v in frame[column].dropna()}
        if len(kinds) > 1 and not kinds <= {int, float}:
            frame[column] = frame[column].map(lambda v: None if v is None else str(v))
    return frame


def write(result: BenchResult, out: Path, command: str) -> dict[str, Path]:
    """All outputs of `result` into `out`; returns their paths by kind."""
    from attnbench.report.plots import bench_figure, plt

    out.mkdir(parents=True, exist_ok=True)
    paths = {"rows": out / "rows.parquet", "limits": out / "limits.parquet",
             "report": out / "report.md", "meta": out / "meta.json"}  # fmt: skip
    frame = rows_frame(result.rows)
    frame.to_parquet(paths["rows"], index=False)
    rows_frame(result.limits).to_parquet(paths["limits"], index=False)
    device = result.meta["spec"]["device"]
    targets = evaluate(result.rows, result.limits, device, result.meta["environment"].get("gpu"))
    paths["report"].write_text(report(result, targets, command), encoding="utf-8")
    meta = {**result.meta, "command": command, "targets": [t.to_dict() for t in targets]}
    paths["meta"].write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    if "mode" in frame and "status" in frame:
        for mode in ("forward", "backward"):
            if ((frame["mode"] == mode) & (frame["status"] == "ok")).any():
                fig = bench_figure(frame, mode)
                paths[mode] = out / f"{mode}.png"
                fig.savefig(paths[mode], dpi=100, bbox_inches="tight")
                plt.close(fig)
    return paths
