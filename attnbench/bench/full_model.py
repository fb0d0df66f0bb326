"""The full-model modes (a training step, greedy decoding, the fused attention path in training
vs the reference path, the key projection comparison), measured by
`attnbench.bench.model_modes` and normalised here into the benchmark's rows.

Imported lazily: model_modes builds whole Seq2Seq models; where that import fails (a broken
or partial install) the run records one row saying so instead of stopping.
"""

from __future__ import annotations

from typing import Any

from attnbench.bench.grid import GridSpec
from attnbench.bench.runner import RunOptions

#: (variant, batch, src_len, tgt_len, hidden) of the training-step and decoding rows
MODEL_CELLS = [("additive", 32, 40, 20, 256), ("scaled_dot", 32, 40, 20, 256)]

#: (batch, src_len, tgt_len) of the key-projection comparison, at hidden = A = 512 as the
#: target says: source and target as long as the grid's query and key lengths (T_q = T_k =
#: 64, 128; how the saving grows with length), and a short target against a long source
#: (80 / 20), where the saving is smallest because the encoder is paid once per batch
KEY_PROJECTION_CELLS = [(16, 64, 64), (16, 128, 128), (16, 80, 20)]


#: (variant, batch, src_len, tgt_len, hidden) of a GPU-only fused-path comparison under
#: bfloat16 autocast (the trainer's default on CUDA): 2**31 tanh per attention call, where the
#: dispatch rule takes the fused kernel for training (`attention.additive.CUDA_KERNEL_MIN_WORK`)
#: and the kernel measured 1.07x the reference path as a module (reports/benchmarks/README.md)
#: while the reference's (B, T, S, a) tensors take ~4 GB each; no CPU cell: there no fused
#: backward exists and the reference alone would need tens of GB
AMP_FUSED_PATH_CELL = ("additive", 32, 512, 512, 256)


def _normalise(row: dict[str, Any], comparison: str | None = None) -> dict[str, Any]:
    out = {**row, "tokens_per_s": row.get("throughput")}
    if comparison:
        out["comparison"] = comparison
    return out


def model_rows(spec: GridSpec, options: RunOptions) -> list[dict[str, Any]]:
    """Rows of every full-model mode on `spec.device`, repeats from `options`; an import
    failure is one recorded row."""
    try:
        from attnbench.bench import model_modes as mm
    except ImportError as exc:
        return [{"mode": "model", "device": spec.device, "status": f"unavailable: {exc}"}]
    rows = []
    for variant, batch, src, tgt, hidden in MODEL_CELLS:
        args = {"variant": variant, "device": spec.device, "batch": batch, "src_len": src,
                "hidden": hidden, "repeats": options.repeats}  # fmt: skip
        rows.append(_normalise(mm.train_step_throughput(**args, tgt_len=tgt)))
        rows.append(_normalise(mm.greedy_decode_throughput(**args, max_len=tgt)))
        fused = mm.fused_path_comparison(
            variant, spec.device, hidden, batch, repeats=options.comparison_repeats
        )  # Luong decoder, 64 source and target tokens: where the fused paths apply
        rows += [_normalise(r, "fused_path") for r in fused]
    if spec.device == "cuda":
        variant, batch, src, tgt, hidden = AMP_FUSED_PATH_CELL
        fused = mm.fused_path_comparison(
            variant, spec.device, hidden=hidden, batch=batch, src_len=src, tgt_len=tgt,
            repeats=options.comparison_repeats, amp=True,
        )  # fmt: skip
        rows += [_normalise(r, "fused_path") for r in fused]
    for batch, src, tgt in KEY_PROJECTION_CELLS:
        comparison = mm.key_projection_comparison(
            spec.device, 512, batch, src, tgt, repeats=options.comparison_repeats
        )
        rows += [_normalise(r, "key_projection") for r in comparison]
    return rows
