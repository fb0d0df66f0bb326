"""The `attnbench` command. Heavy libraries load inside commands, so `--help` stays instant.

User mistakes (`UserError`) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from attnbench.errors import UserError

app = typer.Typer(
    help="Benchmark additive (Bahdanau) vs multiplicative (Luong) attention in Seq2Seq models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (on top of the preset).")
]
PresetOpt = Annotated[
    str | None,
    typer.Option(
        "--preset", "-p", help="Named preset from attnbench/configs: quick, multi30k-cpu, ..."
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Override one setting, e.g. --set train.epochs=3 (repeatable)."
    ),
]


def _print_scores(split: str, scores: dict) -> None:
    typer.echo(
        f"{split:<20} BLEU {scores['bleu']:6.2f}  chrF {scores['chrf']:6.2f}  "
        f"TER {scores['ter']:6.2f}  exact {scores['exact_match']:.3f}  "
        f"({scores['sentences']} sentences)"
    )


@app.command()
def train(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    attention: Annotated[
        str | None, typer.Option("--attention", "-a", help="Attention variant (overrides config).")
    ] = None,
    set_: SetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Run directory [default: attnbench-runs/train/<name>-<attention>]."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its last checkpoint.")
    ] = False,
    test: Annotated[
        bool, typer.Option(help="Evaluate the best checkpoint on the test splits.")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train one model (CPU or GPU, chosen automatically), then score it on the test splits.

    Writes checkpoints every epoch into the run directory; `--resume` continues exactly where
    an interrupted run stopped.
    """
    from attnbench.attention import check_attention_name
    from attnbench.config import load_config
    from attnbench.train import resolve_device
    from attnbench.train import train as run_training
    from attnbench.trained import default_test_splits, evaluate_split, load_trained

    overrides = list(set_ or [])
    if attention is not None:
        overrides.append(f"model.attention={check_attention_name(attention)}")
    cfg = load_config(config, preset or ("quick" if config is None else None), overrides)
    check_attention_name(cfg.model.attention)
    out = out or Path("attnbench-runs") / "train" / f"{cfg.name}-{cfg.model.attention}"
    result = run_training(cfg, out, resume=resume, progress=not quiet)
    typer.echo(
        f"trained {cfg.model.attention}: best epoch {result.best_epoch}, "
        f"{result.train_seconds / 60:.1f} min, {result.tokens_per_second:,.0f} target tokens/s, "
        f"{result.num_parameters:,} parameters; stopped: {result.stopped}"
    )
    summary = {
        "attention": cfg.model.attention,
        "best_epoch": result.best_epoch,
        "train_minutes": result.train_seconds / 60,
        "train_tokens_per_s": result.tokens_per_second,
        "parameters": result.num_parameters,
        "stopped": result.stopped,
        "test": {},
    }
    if test:
        device = resolve_device(cfg.train.device)
        trained = load_trained(result.best_checkpoint, device)
        for split in default_test_splits(trained):
            res = evaluate_split(trained, split, device, progress=not quiet)
            _print_scores(split, res.scores)
            summary["test"][split] = res.scores
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    typer.echo(f"run directory: {out}")


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="A run's best.pt (or last.pt).")],
    split: Annotated[
        list[str] | None,
        typer.Option(
            "--split", help="Split to score (repeatable) [default: the config's test splits]."
        ),
    ] = None,
    beam: Annotated[
        int | None, typer.Option(help="Beam size (1 = greedy) [default: config].", min=1)
    ] = None,
    hypotheses: Annotated[
        Path | None,
        typer.Option(help="Write the detokenised outputs here, one per line (one split)."),
    ] = None,
) -> None:
    """Decode a split with a trained checkpoint and score it with sacrebleu (BLEU, chrF, TER)."""
    from attnbench.train import resolve_device
    from attnbench.trained import default_test_splits, evaluate_split, load_trained

    device = resolve_device("auto")
    trained = load_trained(checkpoint, device)
    splits = split or default_test_splits(trained)
    if hypotheses is not None and len(splits) != 1:
        raise UserError("--hypotheses needs exactly one --split")
    for name in splits:
        res = evaluate_split(trained, name, device, beam_size=beam, progress=True)
        _print_scores(name, res.scores)
        typer.echo(f"  {res.scores['bleu_signature']}")
        if hypotheses is not None:
            hypotheses.write_text("\n".join(res.translations.hypotheses) + "\n", encoding="utf-8")


def main() -> None:
    """Entry point: telemetry off unless the user chose otherwise; UserError -> one line, 2."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("attnbench")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        app()
    except UserError as exc:
        typer.echo(f"attnbench: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("attnbench: interrupted; rerun with --resume to continue", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
