"""The full-model modes (a training step, greedy decoding, the key projection comparison),
measured by `attnbench.bench.model_modes` and normalised here into the benchmark's rows.

Imported lazily: model_modes builds whole Seq2Seq models, which need more of the library.
"""

from __future__ import annotations

from typing import Any

from attnbench.bench.grid import GridSpec


def model_rows(spec: GridSpec, seconds_left: float) -> list[dict[str, Any]]:
    """Rows of every full-model mode on `spec.device`; an import failure is one recorded row."""
    try:
        from attnbench.bench import model_modes
    except ImportError as exc:
        return [{"mode": "model", "device": spec.device, "status": f"unavailable: {exc}"}]
    rows: list[dict[str, Any]] = []
    for name in ("train_step_throughput", "greedy_decode_throughput", "key_projection_comparison"):
        fn = getattr(model_modes, name, None)
        if fn is None:
            rows.append({"mode": name, "device": spec.device, "status": "unavailable"})
            continue
        found = fn(device=spec.device)
        for row in found if isinstance(found, list) else [found]:
            rows.append({"device": spec.device, "status": "ok", **row})
    return rows
