"""The `attnbench` command. Heavy libraries load inside commands, so `--help` stays instant.

User mistakes (`UserError`) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from attnbench.configs import preset_names
from attnbench.errors import UserError, check_folder
from attnbench.settings import check_environment, telemetry_off_by_default

app = typer.Typer(
    help="Benchmark additive (Bahdanau) vs multiplicative (Luong) attention in Seq2Seq models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",  # docstrings' wrapped lines join into paragraphs
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"attnbench {version('attnbench')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            from attnbench import __version__

            typer.echo(f"attnbench {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Options before the command; the app's help text is the Typer's."""


ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (on top of the preset).")
]


def _preset_option(default: str) -> typer.models.OptionInfo:
    """--preset, naming the presets and this command's default."""
    return typer.Option(
        "--preset",
        "-p",
        metavar="NAME",
        help=f"Named preset: {', '.join(preset_names())} \\[default: {default}; none with "
        "--config].",
    )


PresetOpt = Annotated[str | None, _preset_option("quick")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override one setting, e.g. --set train.epochs=3 (repeatable).",
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
            "--out",
            "-o",
            help="Run directory \\[default: attnbench-runs/train/NAME-ATTENTION, NAME the "
            "config's name].",
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
            "--split",
            metavar="SPLIT",
            help="Split to score (repeatable) \\[default: the config's test splits].",
        ),
    ] = None,
    beam: Annotated[
        int | None, typer.Option(help="Beam size (1 = greedy) \\[default: config].", min=1)
    ] = None,
    hypotheses: Annotated[
        Path | None,
        typer.Option(help="Write the detokenised outputs here, one per line (one split)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Decode a split with a trained checkpoint and score it with sacrebleu (BLEU, chrF, TER)."""
    from attnbench.data.prepare import load_split
    from attnbench.train import resolve_device
    from attnbench.trained import default_test_splits, evaluate_split, load_trained

    device = resolve_device("auto")
    trained = load_trained(checkpoint, device)
    splits = split or default_test_splits(trained)
    if hypotheses is not None:
        if len(splits) != 1:
            raise UserError("--hypotheses needs exactly one --split")
        if hypotheses.is_dir():
            raise UserError(f"--hypotheses {hypotheses} is a folder; name a file in it")
        check_folder(hypotheses.parent, "--hypotheses")
    for name in splits:  # every split is found (or one line) before any is decoded
        load_split(trained.config.data, name)
    for name in splits:
        res = evaluate_split(trained, name, device, beam_size=beam, progress=not quiet)
        _print_scores(name, res.scores)
        typer.echo(f"  {res.scores['bleu_signature']}")
        if hypotheses is not None:
            hypotheses.write_text("\n".join(res.translations.hypotheses) + "\n", encoding="utf-8")


WorkdirOpt = Annotated[
    Path, typer.Option("--workdir", "-w", help="Runs, MLflow store (mlflow.db) and Optuna journal.")
]
ParallelOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help="Models trained at once, each in a worker process (CPU cores are shared out). "
        "A small RNN leaves a GPU mostly idle, so several can share one.",
    ),
]


def _flow_kwargs(config: Path | None, preset: str | None, set_: list[str] | None) -> dict:
    return {
        "preset": preset or ("quick" if config is None else None),
        "config": str(config) if config else None,
        "overrides": list(set_ or []),
    }


def _preflight(config: Path | None, preset: str | None, set_: list[str] | None, workdir: Path):
    """Validate config, data, MLflow server and Optuna storage before Prefect starts, so a
    mistake is one line here instead of a failed flow run with a traceback."""
    from attnbench.config import load_config
    from attnbench.pipeline import preflight

    cfg = load_config(config, preset or ("quick" if config is None else None), list(set_ or []))
    preflight(cfg, workdir)
    return cfg


@contextlib.contextmanager
def _flows() -> Iterator[None]:
    """Import the flows (they live beside the package, flows/) and run them with this
    process's Prefect settings (`flows._common.process_settings`)."""
    try:
        import flows.benchmark  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "flows" and not str(exc.name).startswith("flows."):
            raise
        raise UserError(
            "the Prefect flows are not importable; run from the attnbench checkout or install it "
            "with `pip install -e .[orchestration]`"
        ) from exc
    from flows._common import process_settings

    with process_settings():
        yield


def _echo_outcome(parent: str, report: str, workdir: Path) -> None:
    """Where a finished pipeline put its results: MLflow run, report, and how to browse them."""
    typer.echo(f"MLflow parent run: {parent}")
    typer.echo(f"report: {report}")
    typer.echo(f"browse: attnbench ui --workdir {workdir}")


@app.command()
def run(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = Path("attnbench-runs"),
    reports_dir: Annotated[Path, typer.Option(help="Where reports are written.")] = Path("reports"),
    parallel: ParallelOpt = 1,
) -> None:
    """Run the whole benchmark flow: prepare, tune, train seeds, evaluate, bench, report.

    Without PREFECT_API_URL it runs on Prefect's ephemeral server; MLflow and Optuna default
    to files in --workdir (set MLFLOW_TRACKING_URI / tune.storage to scale out).
    --parallel applies to the final models (variants x seeds).
    """
    _preflight(config, preset, set_, workdir)
    check_folder(reports_dir, "--reports-dir")
    with _flows():
        from flows.benchmark import benchmark_flow

        out = benchmark_flow(
            **_flow_kwargs(config, preset, set_),
            workdir=str(workdir),
            reports_dir=str(reports_dir),
            parallel=parallel,
        )
    _echo_outcome(out["parent_run_id"], out["report"], workdir)


@app.command()
def sweep(
    config: ConfigOpt = None,
    preset: Annotated[str | None, _preset_option("britz-sweep")] = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = Path("attnbench-runs"),
    reports_dir: Annotated[Path, typer.Option(help="Where reports are written.")] = Path("reports"),
    parallel: ParallelOpt = 1,
) -> None:
    """Run the attention-dimension sweep of Britz et al. (2017); default preset: britz-sweep.

    Trains every variant x sweep.attn_dims x seed with one fixed configuration (no tuning),
    tests each published claim with paired bootstrap, and writes the sweep report. A rerun
    resumes from the checkpoints of interrupted cells. CPU-sized: --preset britz-sweep-cpu.
    """
    from attnbench.config import load_config
    from attnbench.sweep import sweep_cells

    preset = preset or ("britz-sweep" if config is None else None)
    sweep_cells(load_config(config, preset, list(set_ or [])))  # no attn_dims: one clear line
    _preflight(config, preset, set_, workdir)
    check_folder(reports_dir, "--reports-dir")
    with _flows():
        from flows.sweep import sweep_flow

        out = sweep_flow(
            **_flow_kwargs(config, preset, set_),
            workdir=str(workdir),
            reports_dir=str(reports_dir),
            parallel=parallel,
        )
    _echo_outcome(f"{out['parent_run_id']} ({out['cells']} cells)", out["report"], workdir)


@app.command()
def prepare(config: ConfigOpt = None, preset: PresetOpt = None, set_: SetOpt = None) -> None:
    """Load the benchmark's datasets and train their tokenizers (cached) as a Prefect flow."""
    _preflight(config, preset, set_, Path("attnbench-runs"))
    with _flows():
        from flows.prepare import prepare_flow

        prepare_flow(**_flow_kwargs(config, preset, set_))


@app.command()
def tune(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = Path("attnbench-runs"),
) -> None:
    """Tune every (dataset, attention variant) with Optuna, equal budgets; resumes from storage.

    Point tune.storage at PostgreSQL and start this on several machines to share the studies.
    """
    _preflight(config, preset, set_, workdir)
    with _flows():
        from flows.tune import tune_flow

        tune_flow(**_flow_kwargs(config, preset, set_), workdir=str(workdir))


@app.command()
def bench(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = Path("attnbench-runs"),
    device: Annotated[
        str | None, typer.Option(help="cpu or cuda \\[default: benchmark.bench_device].")
    ] = None,
    lengths: Annotated[
        str | None, typer.Option(help="T_q = T_k values, e.g. 64,256,1024,4096.")
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="float32, bfloat16 or float16 \\[cpu float32, cuda bf16].")
    ] = None,
    modes: Annotated[
        str | None, typer.Option(help="any of forward,backward,model \\[default: forward].")
    ] = None,
    max_seconds: Annotated[
        float | None, typer.Option(help="Total time budget; later cells are skipped.")
    ] = None,
) -> None:
    """Attention speed and memory per implementation and length, with the device's limits,
    logged to MLflow (the same runner as `python -m attnbench.bench`)."""
    from attnbench.bench.grid import parse_ints
    from attnbench.config import load_config
    from attnbench.pipeline import check_benchmark
    from attnbench.tracking import USER_TRACKING_URI, check_server

    overrides = list(set_ or [])
    options = {f"benchmark.bench_{name}": f"--{name.replace('_', '-')}"
               for name in ("device", "lengths", "dtype", "modes", "max_seconds")}  # fmt: skip
    if device is not None:
        if device not in ("cpu", "cuda"):
            raise UserError(f"--device must be cpu or cuda, got {device!r}")
        overrides.append(f"benchmark.bench_device={device}")
    if lengths is not None:
        overrides.append(f"benchmark.bench_lengths={parse_ints(lengths, '--lengths')}")
    if dtype is not None:
        overrides.append(f"benchmark.bench_dtype={dtype}")
    if modes is not None:
        overrides.append(f"benchmark.bench_modes=[{modes}]")
    if max_seconds is not None:
        overrides.append(f"benchmark.bench_max_seconds={max_seconds}")
    cfg = load_config(config, preset or ("quick" if config is None else None), overrides, options)
    check_benchmark(cfg)  # the data is not needed: no preflight of the corpora
    check_folder(workdir, "--workdir")
    if USER_TRACKING_URI:
        check_server(USER_TRACKING_URI)
    if cfg.benchmark.bench_device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda, but torch sees no CUDA GPU; use --device cpu")
    with _flows():
        from flows.bench import bench_flow

        bench_flow(**_flow_kwargs(config, preset, overrides), workdir=str(workdir))


@app.command()
def report(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = Path("attnbench-runs"),
    reports_dir: Annotated[Path, typer.Option(help="Where reports are written.")] = Path("reports"),
    run_id: Annotated[
        str | None,
        typer.Option("--run", help="MLflow pipeline (parent) run id \\[default: the latest]."),
    ] = None,
    experiment: Annotated[
        str | None,
        typer.Option(help="MLflow experiment \\[default: attnbench-NAME, NAME the config's name]."),
    ] = None,
) -> None:
    """Rebuild the report from what MLflow holds (any past pipeline run)."""
    from attnbench.config import load_config
    from attnbench.pipeline import check_benchmark
    from attnbench.pipeline import report as build_report
    from attnbench.tracking import USER_TRACKING_URI, check_server

    cfg = load_config(config, preset or ("quick" if config is None else None), list(set_ or []))
    check_benchmark(cfg)
    if USER_TRACKING_URI:
        check_server(USER_TRACKING_URI)
    elif not (workdir / "mlflow.db").exists():
        raise UserError(f"no MLflow store at {workdir / 'mlflow.db'}; pass the --workdir of a run")
    check_folder(reports_dir, "--reports-dir")
    path = build_report(cfg, workdir, reports_dir, run_id, experiment=experiment)
    typer.echo(f"report: {path}")


@app.command()
def ui(
    workdir: WorkdirOpt = Path("attnbench-runs"),
    host: Annotated[
        str, typer.Option(help="Interface to bind; keep 127.0.0.1 unless you mean it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.", min=1, max=65535)] = 5000,
) -> None:
    """Start the MLflow UI over the workdir's store (one worker, job execution off)."""
    from attnbench.tracking import default_tracking_uri, start_ui

    if not (workdir / "mlflow.db").exists():
        raise UserError(
            f"no MLflow store at {workdir / 'mlflow.db'}; run `attnbench run` first, or pass "
            "--workdir"
        )
    proc = start_ui(workdir, host, port)
    typer.echo(
        f"MLflow UI for {default_tracking_uri(workdir)}: http://{host}:{port}  (Ctrl+C stops)"
    )
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=20)


#: what Prefect's RuntimeError says when its ephemeral server did not start in time, and
#: what attnbench says instead of the traceback
EPHEMERAL_SERVER_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"
EPHEMERAL_SERVER_HINT = (
    "Prefect's temporary server did not start in time (a slow or busy machine); set "
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS higher (attnbench's default: 120), or "
    "start one (`prefect server start`) and set PREFECT_API_URL; then rerun the same command "
    "to resume"
)

#: what an interrupted command tells the user: flows resume by themselves, `train` on request
RESUME_HINT = "rerun the same command to resume (for `attnbench train`, add --resume)"


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (`kill`, a supervisor) leaves through Python's normal shutdown, like Ctrl+C.

    Without it the process died on the spot once Prefect had marked the flow run crashed, so
    the atexit hook that stops Prefect's ephemeral server never ran and the server was left
    running, orphaned. A SystemExit unwinds the flow (the MLflow run is marked failed) first.
    """
    typer.echo(f"attnbench: terminated; {RESUME_HINT}", err=True)
    raise SystemExit(128 + signum)


def _fail_runs_left_open(reason: str) -> None:
    """After a command stopped by SIGTERM or Ctrl+C has unwound, mark the MLflow runs it still
    holds open FAILED (a library may have swallowed the interrupt, or it came between a run's
    creation and the block that ends it); worker processes do the same (flows._common)."""
    tracking = sys.modules.get("attnbench.tracking")  # not imported: no run was started
    if tracking is not None:
        tracking.fail_open_runs(reason)


def _click_class(name: str) -> type[Exception]:
    """Click's exception `name` as this Typer raises it: a base of the public
    typer.BadParameter (Typer 0.29 vendors Click as a private module, older releases use
    click itself), found by name so neither layout is imported by path."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


_UsageError, _ClickException = _click_class("UsageError"), _click_class("ClickException")


def _invoke(args: list[str]) -> int | None:
    """Run the command line without Click's standalone mode, so usage errors reach `main`
    as exceptions (Typer would draw them as a multi-line box); -> the exit code it asked for
    (`--help`, `typer.Exit`), None when the command returned."""
    code = typer.main.get_command(app).main(args, prog_name="attnbench", standalone_mode=False)
    return code if isinstance(code, int) else None


def _not_printed_by_prefect(record: logging.LogRecord) -> bool:
    """False once a flow has started: Prefect's console handler on the root logger prints
    attnbench's records (with a timestamp) too, and every line came out twice."""
    root_handlers = logging.getLogger().handlers
    return not any(type(h).__name__ == "PrefectConsoleHandler" for h in root_handlers)


#: options that only print (help, version): a bad setting must not stand in their way
_PRINT_ONLY_OPTIONS = {"--help", "--version"}


def main() -> None:
    """Entry point: telemetry off unless the user chose otherwise; UserError -> one line, 2."""
    telemetry_off_by_default()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if in_main_thread else None
    logger = logging.getLogger("attnbench")
    logger.handlers = [h for h in logger.handlers if not getattr(h, "attnbench_cli", False)]
    handler = logging.StreamHandler()  # the current stderr (main may run more than once)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.attnbench_cli = True  # type: ignore[attr-defined]
    handler.addFilter(_not_printed_by_prefect)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        if _PRINT_ONLY_OPTIONS.isdisjoint(sys.argv[1:]):
            check_environment()
        code = _invoke(sys.argv[1:])
        if code == 130:  # Typer turns Ctrl+C inside a command into exit code 130
            raise KeyboardInterrupt
        sys.exit(code or 0)  # as Click's standalone mode does
    except UserError as exc:
        typer.echo(f"attnbench: error: {exc}", err=True)
        sys.exit(2)
    except _UsageError as exc:  # a bad option or value, as Click words it: one line too
        message = exc.format_message().rstrip(".")
        if message:  # empty after `attnbench` alone, which has printed the help
            where = exc.ctx.command_path if exc.ctx else "attnbench"
            typer.echo(f"attnbench: error: {message} (see `{where} --help`)", err=True)
        sys.exit(exc.exit_code)
    except _ClickException as exc:
        typer.echo(f"attnbench: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:  # end of input at a prompt
        typer.echo("attnbench: aborted", err=True)
        sys.exit(1)
    except RuntimeError as exc:
        if EPHEMERAL_SERVER_TIMEOUT not in str(exc):
            raise
        typer.echo(f"attnbench: error: {EPHEMERAL_SERVER_HINT}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        _fail_runs_left_open("interrupted (Ctrl+C)")
        typer.echo(f"attnbench: interrupted; {RESUME_HINT}", err=True)
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 128 + signal.SIGTERM:
            _fail_runs_left_open("terminated by SIGTERM")
        raise
    finally:
        if in_main_thread:  # main() may run inside another program (tests): leave it as it was
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
