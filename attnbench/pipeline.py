"""The benchmark's steps as plain functions over paths, configs and run ids.

Prefect flows in `flows/` only sequence these (the library never imports Prefect), so every
step also runs from Python or a notebook. Each function takes small, hashable inputs and
returns small values, never tensors or DataFrames, so Prefect can cache and retry them.

Layout of a workdir:
    mlflow.db, mlartifacts/     MLflow store (embedded default)
    optuna.journal              Optuna studies (embedded default)
    runs/<benchmark>/<dataset>/<variant>/trial-<n>/    one Optuna trial
    runs/<benchmark>/<dataset>/<variant>/seed-<s>/     one final training run
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch

from attnbench.attention import check_attention_name
from attnbench.config import ExperimentConfig, config_to_dict, validate_config
from attnbench.data.prepare import PreparedData, evaluation_splits, prepare_data
from attnbench.errors import UserError, check_folder
from attnbench.evaluate import paired_significance
from attnbench.mechanism import attention_statistics
from attnbench.sweep import SweepCell, sweep_significance
from attnbench.tracking import Tracker
from attnbench.train import TrainResult, resolve_device, train
from attnbench.trained import default_test_splits, evaluate_split, load_trained
from attnbench.tuning import (
    STORAGE_ENV,
    apply_settings,
    make_storage,
    run_study,
    sampler_settings,
    study_name,
)
from attnbench.tuning import suggest as suggest_settings

if TYPE_CHECKING:
    from attnbench.bench.runner import RunOptions

MAIN_DATASET = "main"


def experiment_name(cfg: ExperimentConfig) -> str:
    """One MLflow experiment per benchmark."""
    return f"attnbench-{cfg.name}"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(cfg: ExperimentConfig) -> str:
    device = resolve_device(cfg.train.device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def dataset_configs(cfg: ExperimentConfig) -> dict[str, ExperimentConfig]:
    """`data` as "main" plus every `benchmark.datasets` entry, each a complete config."""
    out = {MAIN_DATASET: cfg}
    tree = config_to_dict(cfg)
    for name, data in cfg.benchmark.datasets.items():
        out[name] = validate_config({**tree, "data": data.model_dump(mode="json")}, "benchmark")
    return out


def check_benchmark(cfg: ExperimentConfig) -> None:
    """Validate what a long pipeline would otherwise discover late."""
    for variant in cfg.benchmark.variants:
        check_attention_name(variant)
    if cfg.benchmark.baseline not in cfg.benchmark.variants:
        raise UserError(
            f"benchmark.baseline '{cfg.benchmark.baseline}' is not in benchmark.variants "
            f"{cfg.benchmark.variants}; add it or pick one of them"
        )
    if not cfg.benchmark.seeds:
        raise UserError("benchmark.seeds is empty; give at least one seed")
    if not cfg.benchmark.bench_modes:
        raise UserError("benchmark.bench_modes is empty; give forward, backward and/or model")
    names = cfg.benchmark.bench_implementations
    if names is not None:
        if not names:
            raise UserError(
                "benchmark.bench_implementations is empty; name some, or leave it unset (null) "
                "for every implementation that runs on the device"
            )
        from attnbench.bench.implementations import check_implementation_names

        check_implementation_names(names)


def preflight(cfg: ExperimentConfig, workdir: Path) -> None:
    """Everything a long pipeline would otherwise discover late, checked before it starts:
    the benchmark grid, the MLflow server, the Optuna storage, and every dataset's files."""
    from attnbench.data.prepare import load_split
    from attnbench.tracking import USER_TRACKING_URI, check_server

    check_benchmark(cfg)
    check_folder(Path(workdir), "--workdir")
    if USER_TRACKING_URI:
        check_server(USER_TRACKING_URI)
    storage = cfg.tune.storage or os.environ.get(STORAGE_ENV)  # as the tuning step picks it
    if storage and not storage.startswith("journal:"):
        make_storage(storage, workdir)
    for ds_cfg in dataset_configs(cfg).values():
        for split in ("train", "val", *evaluation_splits(ds_cfg.data)):
            load_split(ds_cfg.data, split)


def run_dir(workdir: Path, cfg: ExperimentConfig, dataset: str, variant: str, leaf: str) -> Path:
    return Path(workdir) / "runs" / cfg.name / dataset / variant / leaf


def _variant_config(cfg: ExperimentConfig, variant: str, **settings: Any) -> ExperimentConfig:
    return apply_settings(cfg, {"model.attention": variant, **settings})


def prepare(cfg: ExperimentConfig) -> dict[str, int]:
    """Load the corpora and train (or load cached) tokenizers; returns sizes for the record."""
    data = prepare_data(cfg.data)
    return {
        "train_pairs": len(data.train),
        "val_pairs": len(data.val),
        "src_vocab": data.src_tok.vocab_size,
        "tgt_vocab": data.tgt_tok.vocab_size,
        **{f"test_pairs/{k}": len(v) for k, v in data.tests.items()},
    }


class EpochLogger:
    """Training callback: per-epoch metric curves into an MLflow run."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker, self.run_id = tracker, run_id

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        self.tracker.log_metrics(self.run_id, metrics, step=epoch)


class PruningReporter:
    """Training callback: report the tuned metric to Optuna each epoch; stop pruned trials."""

    def __init__(self, trial: optuna.Trial, metric: str = "val/bleu") -> None:
        self.trial, self.metric = trial, metric

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        self.trial.report(metrics[self.metric], epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")


def tune_variant(
    cfg: ExperimentConfig,
    dataset: str,
    variant: str,
    workdir: Path,
    parent_run_id: str | None,
    tags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the variant's study; every trial is an MLflow child run."""
    tracker = Tracker.local(workdir, experiment_name(cfg))
    epochs = cfg.tune.epochs or cfg.train.epochs
    select = "bleu" if cfg.tune.metric == "val/bleu" else "loss"
    base = _variant_config(
        dataset_configs(cfg)[dataset], variant,
        **{"train.epochs": epochs, "train.select_metric": select},
    )  # fmt: skip
    data = prepare_data(base.data)
    name = study_name(cfg.name, dataset, variant)
    run_tags = {**(tags or {}), "attention": variant, "dataset": dataset, "kind": "trial"}
    compute = {"seconds": 0.0}  # time inside training itself, to measure orchestration overhead

    def objective(trial: optuna.Trial) -> float:
        settings = suggest_settings(trial, cfg.tune.space)
        trial_cfg = apply_settings(base, settings)
        out = run_dir(workdir, cfg, dataset, variant, f"trial-{trial.number}")
        run_id = tracker.start_run(
            f"{dataset}/{variant}/trial-{trial.number}",
            parent_run_id,
            {**run_tags, "trial": trial.number, "study": name, "decoder": trial_cfg.model.decoder,
             "seed": trial_cfg.train.seed},
        )  # fmt: skip
        trial.set_user_attr("mlflow_run_id", run_id)
        tracker.log_params(run_id, config_to_dict(trial_cfg))
        tic = time.perf_counter()
        try:
            result = train(
                trial_cfg,
                out,
                data=data,
                callbacks=[EpochLogger(tracker, run_id), PruningReporter(trial, cfg.tune.metric)],
                progress=False,
            )
        except optuna.TrialPruned:
            compute["seconds"] += time.perf_counter() - tic
            tracker.set_tags(run_id, {"trial_state": "PRUNED"})
            tracker.end_run(run_id)
            raise
        except BaseException as exc:
            compute["seconds"] += time.perf_counter() - tic
            tracker.set_tags(run_id, {"trial_state": "FAIL"})
            tracker.fail(run_id, exc)
            raise
        compute["seconds"] += time.perf_counter() - tic
        tracker.log_metrics(run_id, {f"best/{cfg.tune.metric}": result.best_score})
        tracker.set_tags(run_id, {"trial_state": "COMPLETE"})
        tracker.end_run(run_id)
        return result.best_score

    def close_orphan_run(trial: optuna.trial.FrozenTrial) -> None:
        """A trial whose process died left its MLflow run RUNNING: the dashboard says FAILED."""
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id and tracker.client.get_run(run_id).info.status == "RUNNING":
            tracker.set_tags(run_id, {"trial_state": "FAIL"})
            tracker.fail(run_id, ProcessLookupError("the trial's process died"))

    storage = make_storage(cfg.tune.storage, workdir)
    result = run_study(name, objective, cfg.tune, base.train.epochs, storage, close_orphan_run)
    if not result.best_params:
        raise UserError(
            f"study {name}: no trial completed ({result.states}); see the failed trials' "
            "'error' tags in MLflow"
        )
    return {
        "study": name,
        "best_params": result.best_params,
        "best_value": result.best_value,
        "states": result.states,
        "sampler": sampler_settings(cfg.tune),
        "compute_seconds": compute["seconds"],
    }


def train_seed(
    cfg: ExperimentConfig,
    dataset: str,
    variant: str,
    settings: dict[str, Any],
    seed: int,
    workdir: Path,
    parent_run_id: str | None,
    tags: dict[str, Any] | None = None,
    leaf: str | None = None,
) -> dict[str, Any]:
    """Train the tuned configuration with one seed, evaluate every test split, log it all.

    Resumes from the run directory's checkpoint when a previous attempt was interrupted.
    `leaf` names the run below its variant (default `seed-<seed>`; the sweep adds the dimension).
    """
    tracker = Tracker.local(workdir, experiment_name(cfg))
    ds_cfg = dataset_configs(cfg)[dataset]
    final_cfg = _variant_config(ds_cfg, variant, **settings, **{"train.seed": seed})
    leaf = leaf or f"seed-{seed}"
    out = run_dir(workdir, cfg, dataset, variant, leaf)
    run_tags = {
        **(tags or {}),
        "attention": variant,
        "decoder": final_cfg.model.decoder,
        "dataset": dataset,
        "seed": seed,
        "kind": "final",
        "device": device_name(final_cfg),
        "run_dir": str(out),
    }
    with tracker.run(f"{dataset}/{variant}/{leaf}", parent_run_id, run_tags) as run_id:
        tracker.log_params(run_id, config_to_dict(final_cfg))
        tracker.log_dict(run_id, config_to_dict(final_cfg), "config.json")
        data = prepare_data(final_cfg.data)
        tic = time.perf_counter()
        result = train(
            final_cfg,
            out,
            resume=(out / "last.pt").exists(),
            data=data,
            callbacks=[EpochLogger(tracker, run_id)],
            progress=False,
        )
        tracker.log_metrics(run_id, _cost_metrics(result))
        scores = evaluate_and_log(tracker, run_id, result, final_cfg, data)
        trained = load_trained(result.best_checkpoint)
        mechanism = attention_statistics(
            trained.model, data.val, trained.src_tok, trained.tgt_tok,
            max_sentences=cfg.sweep.mechanism_sentences,
        )  # fmt: skip
        tracker.log_metrics(run_id, {f"mechanism/{k}": v for k, v in mechanism.items()})
        compute = time.perf_counter() - tic  # training + decoding + scoring
        tracker.log_artifact(run_id, out / "history.json")
        tracker.log_pytorch_model(run_id, trained.model)
    (out / "results.json").write_text(json.dumps({"run_id": run_id, "scores": scores}, indent=1))
    return {"run_id": run_id, "run_dir": str(out), "scores": scores, "compute_seconds": compute}


def _cost_metrics(result: TrainResult) -> dict[str, float]:
    return {
        "cost/parameters": float(result.num_parameters),
        "cost/train_seconds": result.train_seconds,
        "cost/train_tokens_per_s": result.tokens_per_second,
        "best/epoch": float(result.best_epoch),
        "best/val_bleu": result.best_score,
    }


def evaluate_and_log(
    tracker: Tracker,
    run_id: str,
    result: TrainResult,
    cfg: ExperimentConfig,
    data: PreparedData,
) -> dict[str, dict[str, Any]]:
    """Score every test split: metrics, signatures, hypotheses, length buckets, attention maps."""
    device = resolve_device(cfg.train.device)
    trained = load_trained(result.best_checkpoint, device)
    scores: dict[str, dict[str, Any]] = {}
    for split in default_test_splits(trained):
        tic = time.perf_counter()
        res = evaluate_split(trained, split, device)
        seconds = time.perf_counter() - tic
        out_tokens = sum(len(trained.tgt_tok.encode(h)) for h in res.translations.hypotheses)
        metrics = {f"test/{split}/{k}": res.scores[k] for k in ("bleu", "chrf", "ter")}
        metrics[f"test/{split}/exact_match"] = res.scores["exact_match"]
        metrics[f"cost/{split}/decode_tokens_per_s"] = out_tokens / max(seconds, 1e-9)
        tracker.log_metrics(run_id, metrics)
        tracker.set_tags(
            run_id, {f"test/{split}/{k}_signature": res.scores[f"{k}_signature"]
                     for k in ("bleu", "chrf", "ter")},
        )  # fmt: skip
        text = "\n".join(res.translations.hypotheses) + "\n"
        (result.out_dir / hypotheses_file(split)).write_text(text, encoding="utf-8")
        tracker.log_text(run_id, text, f"hypotheses/{split}.txt")
        tracker.log_dict(run_id, res.by_length, f"by_length/{split}.json")
        maps = attention_maps(trained, res, cfg.benchmark.attention_maps)
        tracker.log_dict(run_id, maps, f"attention_maps/{split}.json")
        scores[split] = {k: v for k, v in res.scores.items()}
    return scores


def attention_maps(trained: Any, res: Any, count: int) -> list[dict[str, Any]]:
    """The first `count` sentences: the source sentence, source/output pieces (the axes'
    labels) and the weights between them."""
    maps = []
    for i in range(min(count, len(res.translations.sources))):
        src_ids = trained.src_tok.encode(res.translations.sources[i])
        hyp_ids = trained.tgt_tok.encode(res.translations.hypotheses[i])
        weights = res.translations.weights[i]
        maps.append(
            {
                "index": i,
                "source_text": res.translations.sources[i],  # the figure's caption
                "source": [*trained.src_tok.pieces(src_ids), "</s>"],
                "output": [*trained.tgt_tok.pieces(hyp_ids), "</s>"][: weights.shape[0]],
                "weights": [[round(float(w), 4) for w in row] for row in weights],
            }
        )
    return maps


def significance(
    cfg: ExperimentConfig,
    dataset: str,
    hypotheses: dict[str, dict[int, str]],
    workdir: Path,
    parent_run_id: str | None,
) -> dict[str, Any]:
    """Paired bootstrap of every variant against the baseline, per test split and seed.

    `hypotheses` maps variant -> seed -> the run directory of that final run (which holds
    the outputs `evaluate_and_log` wrote).
    """
    tracker = Tracker.local(workdir, experiment_name(cfg))
    ds_cfg = dataset_configs(cfg)[dataset]
    from attnbench.data.prepare import evaluation_splits, load_split

    out: dict[str, Any] = {}
    for split in evaluation_splits(ds_cfg.data):
        refs = load_split(ds_cfg.data, split).tgt
        per_seed = {}
        for seed in cfg.benchmark.seeds:
            systems = {}
            for variant, runs in hypotheses.items():
                if seed in runs:
                    path = Path(runs[seed]) / hypotheses_file(split)
                    systems[variant] = path.read_text(encoding="utf-8").split("\n")[:-1]
            if cfg.benchmark.baseline in systems and len(systems) > 1:
                per_seed[str(seed)] = paired_significance(
                    refs, systems, cfg.benchmark.baseline, "bs", cfg.eval.bootstrap_samples
                )
        out[split] = per_seed
    if parent_run_id is not None:
        tracker.log_dict(parent_run_id, out, f"significance/{dataset}.json")
    return out


def train_sweep_cell(
    cfg: ExperimentConfig,
    cell: SweepCell,
    workdir: Path,
    parent_run_id: str | None,
    tags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One cell of the attention-dimension sweep: the config as written, `model.attn_dim` set."""
    return train_seed(
        cfg, "main", cell.variant, {"model.attn_dim": cell.attn_dim}, cell.seed, workdir,
        parent_run_id, {**(tags or {}), "attn_dim": cell.attn_dim}, leaf=cell.leaf,
    )  # fmt: skip


def sweep_tests(
    cfg: ExperimentConfig,
    run_dirs: dict[str, dict[int, Path]],
    workdir: Path,
    parent_run_id: str | None,
) -> dict[str, Any]:
    """Paired bootstrap behind the sweep's claims, on the first test split; logged to the
    pipeline run as significance/sweep.json for the report to read back."""
    split = evaluation_splits(cfg.data)[0]
    out = {"split": split, **sweep_significance(cfg, split, run_dirs, hypotheses_file(split))}
    if parent_run_id is not None:
        Tracker.local(workdir, experiment_name(cfg)).log_dict(
            parent_run_id, out, "significance/sweep.json"
        )
    return out


def hypotheses_file(split: str) -> str:
    return f"hyp-{split}.txt"


def start_pipeline_run(tree: dict[str, Any], workdir: Path, tags: dict[str, Any]) -> str:
    """The parent MLflow run of one pipeline run: resolved config, versions, hardware."""
    cfg = validate_config(tree)
    tracker = Tracker.local(workdir, experiment_name(cfg))
    run_id = tracker.start_run(
        f"benchmark-{cfg.name}", tags={**tags, "kind": "pipeline", "device": device_name(cfg)}
    )
    tracker.log_params(run_id, tree)
    tracker.log_dict(run_id, tree, "config.json")
    tracker.log_dict(run_id, environment(), "environment.json")
    return run_id


def finish_pipeline_run(
    tree: dict[str, Any],
    workdir: Path,
    run_id: str,
    report: Path | None = None,
    error: BaseException | None = None,
    timing: list[dict[str, Any]] | None = None,
) -> None:
    tracker = Tracker.local(workdir, experiment_name(validate_config(tree)))
    if timing:
        tracker.log_dict(run_id, timing, "timing.json")
        for row in timing:
            tracker.log_metrics(run_id, {f"timing/{row['step']}/wall_s": row["wall_s"]})
    if error is not None:
        tracker.fail(run_id, error)
        return
    if report is not None:
        for path in Path(report).parent.iterdir():
            tracker.log_artifact(run_id, path, "report")
    tracker.end_run(run_id)


def environment() -> dict[str, Any]:
    """Package versions and hardware: the reproducibility record of a pipeline run."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("attnbench", "torch", "sacrebleu", "sentencepiece", "optuna", "mlflow", "prefect"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": git_commit(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
    }


def bench_spec(cfg: ExperimentConfig, device: str | None = None) -> Any:
    """The benchmark grid of `cfg` (attnbench.bench.grid.GridSpec); the attention variants
    pick the implementation families (additive, and multiplicative for dot/general/scaled_dot)."""
    from attnbench.bench.grid import default_spec

    b = cfg.benchmark
    device = device or (
        resolve_device(cfg.train.device).type if b.bench_device == "auto" else b.bench_device
    )
    families = sorted({"additive" if v == "additive" else "multiplicative" for v in b.variants})
    spec = default_spec(
        device,
        lengths=sorted(set(b.bench_lengths)),
        batches=[b.bench_batch],
        dims=[b.bench_dim],
        heads=b.bench_heads,
        dtype=b.bench_dtype,
        modes=list(b.bench_modes),
        max_backward_length=b.bench_max_backward_length,
        names=b.bench_implementations,
    )
    spec.families = families
    return spec


def bench_options(cfg: ExperimentConfig, device: str) -> RunOptions:
    """How the benchmark step times its cells: more repeats on CUDA (cheap, noisier per
    call), a quarter of the step's budget per cell unless the config names it."""
    from attnbench.bench.runner import RunOptions

    b = cfg.benchmark
    return RunOptions(
        warmup=3 if device == "cuda" else 1,
        repeats=20 if device == "cuda" else 5,
        cell_seconds=b.bench_cell_seconds or min(20.0, b.bench_max_seconds / 4),
        max_seconds=b.bench_max_seconds,
    )


def throughput_benchmark(
    cfg: ExperimentConfig,
    workdir: Path,
    parent_run_id: str | None,
    tags: dict[str, Any],
    device: str | None = None,
) -> dict[str, Any]:
    """The attention benchmark (attnbench.bench) as a child run: its files (rows.parquet,
    report.md, plots) as artifacts, tokens/s and fraction of the limit as metrics per length.

    Returns {"rows", "report" (Markdown text), "out" (the folder)}."""
    from attnbench.bench.outputs import write
    from attnbench.bench.runner import run_benchmark

    b = cfg.benchmark
    spec = bench_spec(cfg, device)
    result = run_benchmark(spec, bench_options(cfg, spec.device))
    out = Path(workdir) / "runs" / cfg.name / "bench"
    paths = write(result, out, f"attnbench bench (config {cfg.name})")
    tracker = Tracker.local(workdir, experiment_name(cfg))
    run_tags = {**tags, "kind": "bench", "device": spec.device}
    with tracker.run("bench/attention", parent_run_id, run_tags) as rid:
        tracker.log_params(
            rid,
            {"device": spec.device, "dtype": spec.dtype, "batch": b.bench_batch,
             "dim": b.bench_dim, "heads": spec.heads, "modes": ",".join(spec.modes),
             "lengths": ",".join(map(str, spec.lengths))},
        )  # fmt: skip
        for r in result.rows:
            if r.get("status") != "ok" or r.get("mode") not in ("forward", "backward"):
                continue
            prefix = f"bench/{r['mode']}/{r['implementation']}"
            metrics = {f"{prefix}/tokens_per_s": r["tokens_per_s"]}
            if r.get("fraction_of_limit") is not None:
                metrics[f"{prefix}/fraction_of_limit"] = r["fraction_of_limit"]
            tracker.log_metrics(rid, metrics, r["length"])
        tracker.log_metrics(rid, limit_drift_metrics(result.limits, spec.dtype))
        tracker.log_metrics(rid, full_model_metrics(result.rows))
        for path in paths.values():
            tracker.log_artifact(rid, path, "bench")
    return {"rows": result.rows, "report": paths["report"].read_text(), "out": str(out)}


def full_model_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    """bench/model/<comparison or mode>/<variant>/<implementation>/src<S>_tgt<T>/tokens_per_s,
    and /speedup on a comparison's first side, for the full-model rows: the dashboard then
    compares runs on what the key projection once and the fused path save, per length."""
    from attnbench.bench.tables import model_frame

    metrics: dict[str, float] = {}
    frame = model_frame(rows)
    if frame.empty:
        return metrics
    for r in frame[frame["status"] == "ok"].to_dict("records"):
        kind = r.get("comparison") if isinstance(r.get("comparison"), str) else r["mode"]
        shape = f"src{r['src_len']:.0f}_tgt{r['tgt_len']:.0f}"
        prefix = f"bench/model/{kind}/{r['variant']}/{r['implementation']}/{shape}"
        metrics[f"{prefix}/tokens_per_s"] = float(r["tokens_per_s"])
        speedup = r.get("speedup")
        if speedup is not None and speedup == speedup:  # NaN: the comparison's other side
            metrics[f"{prefix}/speedup"] = float(speedup)
    return metrics


def limit_drift_metrics(limits: list[dict[str, Any]], dtype: str) -> dict[str, float]:
    """bench/limit_drift/{tanh,matmul}: end-of-run best limit / start-of-run best - 1, so the
    dashboard shows whether the device held its speed through the run."""
    from attnbench.bench.limits import drift

    return {
        f"bench/limit_drift/{d['limit']}": d["change"]
        for d in drift(limits)
        if d["limit"] == "tanh" or d["dtype"] == dtype
    }


def report(
    cfg: ExperimentConfig,
    workdir: Path,
    reports_dir: Path,
    parent_run_id: str | None,
    experiment: str | None = None,
) -> Path:
    """reports/<experiment>/<date>/: summary.md (+ parquet) and index.html, from MLflow only.

    Without `parent_run_id` the latest pipeline run is reported; returns the HTML report's
    path when there is a pipeline run, else the summary's."""
    import re

    from attnbench.config import SAFE_NAME
    from attnbench.report.html import write_html
    from attnbench.report.summary import write_summary
    from attnbench.results import latest_pipeline_run

    if experiment is not None and not re.match(SAFE_NAME, experiment):
        raise UserError(
            f"experiment name {experiment!r} is not a plain name (it names a report folder); "
            "use letters, digits, '.', '_' or '-'"
        )
    tracker = Tracker.local(workdir, experiment or experiment_name(cfg), create=False)
    if parent_run_id is not None and not tracker.holds_run(parent_run_id):
        raise UserError(
            f"no run {parent_run_id!r} in MLflow experiment '{tracker.experiment}' at "
            f"{tracker.tracking_uri}; leave out --run for the latest pipeline run"
        )
    parent_run_id = parent_run_id or latest_pipeline_run(tracker)
    if cfg.sweep.attn_dims:
        from attnbench.report.britz import write_sweep_html
        from attnbench.report.summary import report_folder

        if parent_run_id is None:
            raise UserError(
                f"no sweep run in experiment '{tracker.experiment}' at {workdir}; run "
                f"`attnbench sweep` with this config first (or pass --workdir)"
            )
        return write_sweep_html(tracker, parent_run_id, report_folder(reports_dir, tracker))
    significance = {}  # read back from MLflow, never taken from the live pipeline
    if parent_run_id is not None:
        significance = {
            ds: tracker.load_json_artifact(parent_run_id, f"significance/{ds}.json")
            for ds in dataset_configs(cfg)
            if tracker.has_artifact(parent_run_id, f"significance/{ds}.json")
        }
    summary = write_summary(
        tracker, parent_run_id, reports_dir, significance, baseline=cfg.benchmark.baseline
    )
    if parent_run_id is None:
        return summary
    return write_html(tracker, parent_run_id, summary.parent)
