"""The summary table in the shape of Long Range Arena's efficiency table (Tay et al. 2021,
table 3): one row per implementation, one column per length, each cell the throughput with
its speed-up over the family's baseline implementation, and the peak memory beside it."""

from __future__ import annotations

from typing import Any

import pandas as pd

from attnbench.bench.implementations import BASELINES, REGISTRY

OK = "ok"


def lra_frame(rows: list[dict[str, Any]] | pd.DataFrame, mode: str = "forward") -> pd.DataFrame:
    """Tidy: implementation, family, length, batch, dim, status, tokens_per_s, speedup,
    peak_memory_mb; speed-up = tokens/s over the baseline's at the same length, batch, dim."""
    frame = pd.DataFrame(rows)
    if frame.empty or "implementation" not in frame:
        return pd.DataFrame()
    frame = frame[(frame["mode"] == mode) & frame["implementation"].notna()].copy()
    frame[["length", "batch", "dim"]] = frame[["length", "batch", "dim"]].astype(int)
    for column in ("tokens_per_s", "peak_memory_mb"):
        if column not in frame:
            frame[column] = float("nan")
    frame["family"] = frame["implementation"].map(lambda n: REGISTRY[n].family)
    ok = frame[frame["status"] == OK]
    base = {
        (r.family, r.length, r.batch, r.dim): r.tokens_per_s
        for r in ok.itertuples()
        if r.implementation == BASELINES[r.family]
    }
    frame["speedup"] = [
        r.tokens_per_s / base[key]
        if r.status == OK and (key := (r.family, r.length, r.batch, r.dim)) in base
        else None
        for r in frame.itertuples()
    ]
    keep = [
        "implementation",
        "family",
        "length",
        "batch",
        "dim",
        "status",
        "tokens_per_s",
        "speedup",
        "peak_memory_mb",
    ]
    return frame[keep].reset_index(drop=True)


def _cell(r: pd.Series) -> str:
    if r["status"] != OK:
        return {"out of memory": "OOM"}.get(r["status"], str(r["status"]).split(":")[0])
    speed = "" if pd.isna(r["speedup"]) else f" ({r['speedup']:.2f}x)"
    mem = "" if pd.isna(r["peak_memory_mb"]) else f", {r['peak_memory_mb']:,.0f} MB"
    return f"{r['tokens_per_s']:,.0f}{speed}{mem}"


def lra_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Wide: index implementation (registry order), one column per length, cells as text."""
    if frame.empty:
        return pd.DataFrame()
    text = frame.assign(cell=frame.apply(_cell, axis=1))
    wide = text.pivot_table(
        index="implementation", columns="length", values="cell", aggfunc="first"
    )
    order = [n for n in REGISTRY if n in wide.index]
    wide = wide.loc[order].fillna("")
    wide.columns = [f"T={c}" for c in wide.columns]
    return wide


#: the columns a full-model row is read by, in the order reports show them
MODEL_COLUMNS = ["mode", "variant", "implementation", "comparison", "decoder", "batch",
                 "src_len", "tgt_len", "dim", "precision", "status", "tokens_per_s",
                 "throughput_unit",
                 "seconds_median", "speedup"]  # fmt: skip


def model_frame(rows: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """The full-model rows (training steps, greedy decoding, side-by-side comparisons), tidy:
    every row whose mode is not an attention-alone mode and whose implementation is not an
    attention implementation, in `MODEL_COLUMNS` (those present)."""
    frame = pd.DataFrame(rows)
    if frame.empty or "mode" not in frame:
        return pd.DataFrame()
    attention_alone = frame["mode"].isin(["forward", "backward"])
    if "implementation" in frame:
        attention_alone |= frame["implementation"].isin(list(REGISTRY))
    frame = frame[~attention_alone]
    return frame[[c for c in MODEL_COLUMNS if c in frame]].reset_index(drop=True)


def key_projection_summary(rows: list[dict[str, Any]] | pd.DataFrame) -> str | None:
    """One sentence on what computing the key projection once saves, per measured source and
    target length, or None without it."""
    frame = model_frame(rows)
    if frame.empty or "comparison" not in frame:
        return None
    pair = frame[(frame["comparison"] == "key_projection") & (frame["status"] == OK)]
    cells = []
    for (src, tgt), both in pair.groupby(["src_len", "tgt_len"], sort=False):
        side = both.set_index("implementation")["tokens_per_s"]
        if {"keys_once", "keys_per_step"} <= set(side.index):
            once, per_step = side["keys_once"], side["keys_per_step"]
            cells.append(f"{once / per_step:.2f}x with {src:.0f} source and {tgt:.0f} target "
                         f"tokens ({once:,.0f} vs {per_step:,.0f})")  # fmt: skip
    if not cells:
        return None
    a = pair.iloc[0]
    return (
        f"Training step of the {a['variant']}-attention model ({a['decoder'].title()} decoder, "
        f"batch {a['batch']}, hidden {a['dim']}), {a['throughput_unit']} with the key "
        "projection computed once per source vs recomputed at every decoder step (what "
        f"tutorial code does): {'; '.join(cells)}."
    )


def markdown(table: pd.DataFrame, index_name: str = "") -> str:
    """A pipe table without extra dependencies (pandas' to_markdown needs tabulate)."""
    if table.empty:
        return "_(no rows)_"
    frame = table.reset_index() if index_name else table
    if index_name:
        frame = frame.rename(columns={frame.columns[0]: index_name})
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])
