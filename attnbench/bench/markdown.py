"""The run as a Markdown report: command, environment, limits, LRA-style tables, full-model
rows and the targets checklist with measured values."""

from __future__ import annotations

from typing import Any

import pandas as pd

from attnbench.bench import limits as limits_mod
from attnbench.bench.runner import BenchResult
from attnbench.bench.tables import lra_frame, lra_table, markdown, model_frame
from attnbench.bench.targets import Target

NOTES = """\
Conventions. Throughput is queries (tokens) per second: B*T_q over the median time. Work
counts only keys that are not padding (the last eighth of every row is padding): additive
attention does B*H*T_q*T_k*a tanh (the forward count, also for forward+backward rows);
multiplicative 4*B*H*T_q*T_k*d FLOPs forward, 3.5x that forward+backward (FlashAttention's
convention). Fractions are of the best limit measured in this run, at its start or its end.
Peak memory is the working memory of the timed calls: on CUDA max_memory_allocated minus
what was allocated before them, on the CPU the peak RSS of a fresh child process per cell
minus its RSS before the timed calls (inputs and imports excluded). Every implementation was
checked against the float64 reference (with a padding mask) before it was timed; 'mismatch'
rows were not timed."""


def _limits_table(limits: list[dict[str, Any]]) -> str:
    frame = pd.DataFrame(limits)
    if frame.empty:
        return "_(none)_"
    frame["rate"] = frame["rate"].map(lambda v: f"{v:.3g}")
    columns = ["limit", "method", "dtype", "when", "rate", "unit", "source", "note"]
    return markdown(frame[[c for c in columns if c in frame]])


def drift_note(limits: list[dict[str, Any]]) -> str:
    """One line on how far the device's limits moved between the start and the end of the run."""
    moves = limits_mod.drift(limits)
    if not moves:
        return ""
    changes = ", ".join(
        f"{m['limit']}{'' if m['limit'] == 'tanh' else ' ' + m['dtype']} {m['change']:+.0%}"
        for m in moves
    )
    worst = max(moves, key=lambda m: abs(m["change"]))
    if abs(worst["change"]) <= limits_mod.DRIFT_WARNING:
        return f"The best limits measured again at the end of the run: {changes} (stable)."
    return (
        f"**The device's speed moved during the run** (best limit, end vs start: {changes}). "
        f"Fractions are of the best limit either time; a fraction or target within "
        f"{abs(worst['change']):.0%} of its threshold may read differently on a steadier "
        "machine (a shared VM's host, a GPU's clocks): rerun to confirm it."
    )


def _model_table(rows: list[dict[str, Any]]) -> str:
    frame = model_frame(rows)
    if frame.empty:
        return "_(no full-model rows)_"
    frame = frame.astype(object).where(frame.notna(), "")
    return markdown(frame.map(lambda v: f"{v:.4g}" if isinstance(v, float) else v))


def checklist(targets: list[Target]) -> str:
    marks = {True: "[x]", False: "[ ]", None: "[?]"}
    lines = [
        f"- {marks[t.passed]} {t.name} (target {t.threshold}): measured {t.measured}"
        + ("" if t.passed is not None else " (not measured)" if "not measured" not in t.measured
           else "")
        for t in targets
    ]  # fmt: skip
    return "\n".join(lines) + "\n\n[x] met, [ ] missed, [?] not measured in this run"


def report(result: BenchResult, targets: list[Target], command: str) -> str:
    env, spec = result.meta["environment"], result.meta["spec"]
    device = env.get("gpu") or f"CPU ({env['processor']}, {env['cpu_threads']} threads)"
    parts = [
        f"## Attention benchmark on {spec['device']}: {device}",
        f"Command: `{command}`  \ntorch {env['torch']}, Python {env['python']}, "
        f"{env['platform']}; dtype {spec['dtype']}, heads {spec['heads']}, batch "
        f"{spec['batches']}, dim/head {spec['dims']}; {result.meta['seconds']:.0f} s in all.",
        "### Limits measured in this run",
        _limits_table(result.limits),
    ]
    if note := drift_note(result.limits):
        parts.append(note)
    sdpa = result.meta.get("sdpa_backends") or {}
    if sdpa:
        working = ", ".join(sdpa.get("working") or []) or "n/a (CPU)"
        parts.append(
            f"SDPA with a padding mask: PyTorch chooses **{sdpa.get('chosen')}**; backends that "
            f"accept these inputs: {working}."
        )
    for mode in ("forward", "backward"):
        frame = lra_frame(result.rows, mode)
        if frame.empty:
            continue
        for (batch, dim), part in frame.groupby(["batch", "dim"]):
            parts.append(
                f"### {mode}: tokens/s (speed-up vs the family's baseline), peak memory "
                f"(B={batch}, dim/head={dim})"
            )
            parts.append(lra_table(part).pipe(markdown, "implementation"))
    parts += ["### Full model", _model_table(result.rows)]
    parts += ["### Targets", checklist(targets), "### Notes", NOTES]
    return "\n\n".join(parts) + "\n"
