"""The HTML report: "which attention, at what cost, how sure are we", built only from what
MLflow holds (through `attnbench.results`), so any past pipeline run can be re-reported.

Every section states what is missing instead of failing: a pipeline run without the
benchmark step, say, gets a report whose benchmark section says so.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from attnbench.report import plots
from attnbench.report.significance import ALPHA, comparisons
from attnbench.results import (
    children,
    curves,
    json_artifacts,
    summarise,
    test_scores,
)
from attnbench.tracking import Tracker


@dataclass
class Section:
    id: str
    title: str
    paragraphs: list[dict[str, str]] = field(default_factory=list)
    tables: list[dict[str, str]] = field(default_factory=list)
    figures: list[dict[str, str]] = field(default_factory=list)
    code: list[dict[str, str]] = field(default_factory=list)
    missing: str = ""

    def say(self, text: str, cls: str = "") -> None:
        self.paragraphs.append({"text": text, "cls": cls})

    def table(self, frame: pd.DataFrame, caption: str = "") -> None:
        self.tables.append({"html": frame.to_html(index=False, na_rep="–", border=0),
                            "caption": caption})  # fmt: skip

    def figure(self, src: str, alt: str) -> None:
        self.figures.append({"src": src, "alt": alt})


def _fmt(mean: float, std: float, ci: float) -> str:
    if math.isnan(mean):
        return "–"
    if math.isnan(std):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {std:.2f} [±{ci:.2f}]"


@dataclass
class ReportData:
    tracker: Tracker
    parent_run_id: str
    config: dict[str, Any]
    finals: pd.DataFrame
    trials: pd.DataFrame
    bench: pd.DataFrame
    significance: dict[str, Any]

    @classmethod
    def load(cls, tracker: Tracker, parent_run_id: str) -> ReportData:
        def parent_json(path: str) -> Any:
            if not tracker.has_artifact(parent_run_id, path):
                return None
            return tracker.load_json_artifact(parent_run_id, path)

        finals = children(tracker, parent_run_id, "final")
        if not finals.empty:
            finals = finals[finals["status"] == "FINISHED"]
        significance = {}
        if not finals.empty:
            for dataset in sorted(finals["dataset"].unique()):
                found = parent_json(f"significance/{dataset}.json")
                if found:
                    significance[dataset] = found
        return cls(
            tracker,
            parent_run_id,
            parent_json("config.json") or {},
            finals,
            children(tracker, parent_run_id, "trial"),
            children(tracker, parent_run_id, "bench"),
            significance,
        )

    @property
    def baseline(self) -> str:
        return self.config.get("benchmark", {}).get("baseline", "additive")


def _verdict(system: str, baseline: str, diff: float, tests: pd.DataFrame, family: int) -> str:
    """A sentence on one system's mean BLEU difference and how many seeds back it.

    Seeds count for the direction they are significant in, so seeds that disagree are said,
    not summed into the mean's direction.
    """
    word = "higher" if diff > 0 else "lower"
    significant = tests[tests["significant"]]
    along = int((significant["diff"] * diff > 0).sum())
    against = int((significant["diff"] * diff < 0).sum())
    text = (f"{system} is {abs(diff):.2f} BLEU {word} than {baseline} on average; {word} "
            f"significantly in {along} of {len(tests)} seeds")  # fmt: skip
    if against:
        other = "lower" if diff > 0 else "higher"
        text += f", {other} significantly in {against}"
    return text + f" (Holm over {family} tests)."


def verdict_section(data: ReportData) -> Section:
    sec = Section("verdict", "Verdict: quality per variant, with spread and significance")
    if data.finals.empty:
        sec.missing = "No finished final runs: the train step did not run or failed."
        return sec
    summary = summarise(test_scores(data.finals))
    sec.say(
        "Scores are sacreBLEU on detokenised output: mean ± std over seeds, with the 95% "
        "t-interval half-width in brackets. p: paired bootstrap against the baseline "
        f"'{data.baseline}', per seed (sacrebleu.significance; with n = eval.bootstrap_samples "
        "resamples, 1000 by default, no p is below 1 / (n + 1)), Holm-adjusted over all of a "
        "split's tests (variants x seeds) in brackets; a seed's difference counts as "
        f"significant where the adjusted p < {ALPHA}."
    )
    for (dataset, split), block in summary.groupby(["dataset", "split"]):
        sig = data.significance.get(dataset, {}).get(split, {})
        tests = comparisons(sig, data.baseline)
        rows, sentences = [], []
        base = block[(block["attention"] == data.baseline) & (block["metric"] == "bleu")]
        base_bleu = float(base["mean"].iloc[0]) if not base.empty else math.nan
        for attention, g in block.groupby("attention"):
            by = g.set_index("metric")
            row = {"attention": attention, "seeds": int(by["n"].max())}
            for metric in ("bleu", "chrf", "ter", "exact_match"):
                if metric in by.index:
                    r = by.loc[metric]
                    row[metric] = _fmt(r["mean"], r["std"], r["ci95"])
            mine = tests[tests["system"] == attention]
            if attention != data.baseline and not mine.empty:
                row["p (BLEU) per seed [Holm]"] = ", ".join(
                    f"{t.p:.3f} [{t.p_holm:.3f}]" for t in mine.itertuples()
                )
                diff = float(by.loc["bleu", "mean"]) - base_bleu
                sentences.append(_verdict(attention, data.baseline, diff, mine, len(tests)))
            rows.append(row)
        sec.table(pd.DataFrame(rows), f"{dataset} / {split}")
        if sentences:
            sec.say(f"{dataset} / {split}: " + " ".join(sentences), "verdict")
        elif not sig:
            sec.say(f"{dataset} / {split}: no significance test results were logged.", "missing")
    return sec


def cost_section(data: ReportData) -> Section:
    sec = Section("cost", "Cost: parameters, time, throughput, memory")
    if data.finals.empty:
        sec.missing = "No finished final runs."
        return sec
    decode_cols = [c for c in data.finals if c.endswith("/decode_tokens_per_s")]
    frame = data.finals.assign(
        decode=data.finals[decode_cols].mean(axis=1) if decode_cols else math.nan
    )
    rows = []
    for (dataset, attention), g in frame.groupby(["dataset", "attention"]):
        rows.append(
            {
                "dataset": dataset,
                "attention": attention,
                "parameters": f"{g['metrics.cost/parameters'].mean():,.0f}",
                "train time (s)": f"{g['metrics.cost/train_seconds'].mean():.1f}",
                "train tokens/s": f"{g['metrics.cost/train_tokens_per_s'].mean():,.0f}",
                "decode tokens/s": f"{g['decode'].mean():,.0f}",
                "device": g["device"].iloc[0],
            }
        )
    sec.table(pd.DataFrame(rows))
    sec.say(
        "Means over seeds. Training throughput counts target tokens; decoding throughput counts "
        "output tokens with the configured beam. Peak memory is measured by the long-sequence "
        "benchmark on GPU; on CPU it is not recorded per training run."
    )
    return sec


def curves_section(data: ReportData) -> Section:
    sec = Section("curves", "Learning curves")
    if data.finals.empty:
        sec.missing = "No finished final runs."
        return sec
    frame = curves(data.tracker, data.finals, "val/bleu")
    if frame.empty:
        sec.missing = "The final runs logged no val/bleu curve."
        return sec
    for dataset in sorted(frame["dataset"].unique()):
        sec.figure(
            plots.learning_curves(frame, dataset, "val/bleu"), f"{dataset}: val/bleu per epoch"
        )
    return sec


#: completed trials below which the report warns that importances say little
FEW_TRIALS = 10


def tuning_section(data: ReportData) -> Section:
    sec = Section("tuning", "Tuning: Optuna history, budget and parameter importance")
    tune = data.config.get("tune", {})
    if data.trials.empty:
        sec.missing = "No trial runs in MLflow: the tune step did not run."
        return sec
    metric = tune.get("metric", "val/bleu")
    sec.say(
        f"Every variant had the same budget: {tune.get('n_trials')} trials of "
        f"{tune.get('epochs') or data.config.get('train', {}).get('epochs')} epochs, the same "
        f"search space ({', '.join(tune.get('space', {}))}), TPE seeded with "
        f"{tune.get('sampler_seed')}, pruner '{tune.get('pruner')}', objective {metric}."
    )
    states = (
        data.trials.assign(state=data.trials.get("trial_state", "UNKNOWN"))
        .groupby(["dataset", "attention", "state"]).size().unstack("state", fill_value=0)
        .rename_axis(columns=None).reset_index()  # no empty "state" column in the table
    )  # fmt: skip
    sec.table(states, "Trials by final state (completed, pruned, failed)")
    for dataset in sorted(data.trials["dataset"].unique()):
        sec.figure(
            plots.optimisation_history(data.trials, dataset, metric),
            f"{dataset}: {metric} per trial and best so far",
        )
    importances = parameter_importances(data.trials, tune, metric)
    if importances.empty:
        sec.say("Parameter importances need at least two completed trials per study.", "missing")
    else:
        sec.table(importances, "Parameter importance (Optuna fANOVA, per study)")
        if (importances["completed"] < FEW_TRIALS).any():
            sec.say(
                "fANOVA fits a random forest to a study's completed trials; with fewer than "
                f"{FEW_TRIALS} (the 'completed' column) the importances say little. TPE's first "
                "trials are random draws, seeded alike in every study, so studies with the "
                "same few trials can show the same numbers.",
                "caveat",  # a warning about what is there, not a note of what is missing
            )
    return sec


def parameter_importances(trials: pd.DataFrame, tune: dict, metric: str) -> pd.DataFrame:
    """Rebuild each study from the MLflow trial runs and ask Optuna for importances."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # in-memory rebuilds, not news
    space = tune.get("space", {})
    rows = []
    value_col = f"metrics.best/{metric}"
    if value_col not in trials:
        return pd.DataFrame()
    done = trials[(trials.get("trial_state") == "COMPLETE") & trials[value_col].notna()]
    for (dataset, attention), g in done.groupby(["dataset", "attention"]):
        if len(g) < 2:
            continue
        dists = {}
        for key, spec in space.items():
            if spec.get("type") == "categorical":
                dists[key] = optuna.distributions.CategoricalDistribution(spec["choices"])
            elif spec.get("type") == "int":
                dists[key] = optuna.distributions.IntDistribution(
                    int(spec["low"]), int(spec["high"])
                )
            else:
                dists[key] = optuna.distributions.FloatDistribution(
                    spec["low"], spec["high"], log=bool(spec.get("log"))
                )
        study = optuna.create_study(direction="minimize" if metric.endswith("loss") else "maximize")
        for _, t in g.iterrows():
            params = {}
            for key in dists:
                raw = t.get(f"params.{key}")
                params[key] = yaml.safe_load(raw) if isinstance(raw, str) else raw
            study.add_trial(
                optuna.trial.create_trial(params=params, distributions=dists, value=t[value_col])
            )
        try:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except (ValueError, RuntimeError):  # too few distinct trials for the evaluator
            continue
        rows.append({"dataset": dataset, "attention": attention, "completed": len(g),
                     **{k: f"{v:.2f}" for k, v in imp.items()}})  # fmt: skip
    return pd.DataFrame(rows)


def length_section(data: ReportData) -> Section:
    sec = Section("length", "Quality vs source length")
    if data.finals.empty:
        sec.missing = "No finished final runs."
        return sec
    rows = []
    for split_file in {"test_2016_flickr", "test"}:
        found = json_artifacts(data.tracker, data.finals, f"by_length/{split_file}.json")
        for run_id, buckets in found.items():
            run = data.finals[data.finals["run_id"] == run_id].iloc[0]
            for b in buckets:
                rows.append({"dataset": run["dataset"], "attention": run["attention"], **b})
    if not rows:
        sec.missing = "No BLEU-by-length artifacts were logged."
        return sec
    frame = pd.DataFrame(rows)
    for dataset in sorted(frame["dataset"].unique()):
        finals = data.finals[data.finals["dataset"] == dataset]
        column = "metrics.test/test/exact_match"  # only synthetic tasks have a `test` split
        synthetic = column in finals.columns and finals[column].notna().any()
        metric = "exact_match" if synthetic else "bleu"
        sec.figure(plots.by_length(frame, dataset, metric), f"{dataset}: {metric} by source length")
    return sec


def bench_section(data: ReportData) -> Section:
    """The attention benchmark's run (attnbench.bench): throughput and memory by length, the
    LRA-style tables (forward, and forward + backward where timed) and the full-model rows
    (key projection once vs per step, where timed), read back from its rows.parquet artifact."""
    from attnbench.bench.tables import key_projection_summary, lra_frame, model_frame

    sec = Section("bench", "Long sequences: throughput and memory")
    if data.bench.empty:
        sec.missing = "This pipeline run has no benchmark step results."
        return sec
    run_id, artifact = data.bench.iloc[0]["run_id"], "bench/rows.parquet"
    if not data.tracker.has_artifact(run_id, artifact):
        sec.missing = "The benchmark run holds no result table."
        return sec
    meta: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows = pd.read_parquet(data.tracker.download_artifact(run_id, artifact, Path(tmp)))
        if data.tracker.has_artifact(run_id, "bench/meta.json"):
            meta = data.tracker.load_json_artifact(run_id, "bench/meta.json")
    timed = {mode: lra_frame(rows, mode) for mode in ("forward", "backward")}
    timed = {m: f for m, f in timed.items() if not f.empty and (f["status"] == "ok").any()}
    model = model_frame(rows)
    if not timed and model.empty:
        sec.missing = "No attention implementation was timed in the benchmark run."
        return sec
    env = meta.get("environment", {})
    hardware = env.get("gpu") or env.get("processor") or rows["device"].iloc[0]
    threads = "" if env.get("gpu") else f", {env.get('cpu_threads', '?')} threads"
    sec.say(
        f"Measured on {hardware} ({rows['device'].iloc[0]}{threads}; torch "
        f"{env.get('torch', '?')}), median of repeats after warm-up; every implementation was "
        "checked equal to the reference first. Speed-ups are against the family's baseline "
        "(materialised additive, matmul+softmax multiplicative); the benchmark run's "
        "report.md adds the measured tanh and matmul limits and the targets."
    )
    for mode, frame in timed.items():
        _bench_mode(sec, rows, mode, frame)
    if not model.empty:
        if sentence := key_projection_summary(model):
            sec.say(sentence)
        shown = model.astype(object).where(model.notna(), None)
        sec.table(
            shown.map(_number),
            "Full model: training steps (target tokens/s) and greedy decoding (generated "
            "tokens/s); speedup = this row over its comparison's other side",
        )
    return sec


def _number(value: Any) -> Any:
    """Floats as people read them: 1,270 and 0.2519, not 1.27e+03."""
    if not isinstance(value, float):
        return value
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _bench_mode(sec: Section, rows: pd.DataFrame, mode: str, frame: pd.DataFrame) -> None:
    """One mode's plot, LRA-style table and share of the measured limit."""
    from attnbench.bench.tables import lra_table

    label = {"forward": "Attention alone, forward", "backward": "Forward + backward"}[mode]
    first = frame.iloc[0]
    sec.figure(
        plots.to_data_uri(plots.bench_figure(rows, mode)),
        f"{label}: tokens per second and peak memory vs length (log-log)",
    )
    sec.table(
        lra_table(frame).reset_index(),
        f"{label} (batch {first['batch']}, dimension per head {first['dim']}): tokens/s "
        "(speed-up), peak memory, by length",
    )
    ok = rows[(rows["status"] == "ok") & (rows["mode"] == mode)]
    if "fraction_of_limit" in ok and ok["fraction_of_limit"].notna().any():
        share = ok.pivot_table(
            index="implementation", columns="length", values="fraction_of_limit", aggfunc="max"
        )
        share = share.map(lambda f: "–" if pd.isna(f) else f"{100 * f:.1f}%")
        share.columns = [f"T={c}" for c in share.columns]
        sec.table(
            share.reset_index(),
            f"Roofline, {label.lower()}: share of the limit measured in the same run (tanh/s for "
            "additive, matmul FLOP/s for multiplicative)",
        )


def maps_section(data: ReportData, count: int = 2) -> Section:
    sec = Section("maps", "Attention maps: the same sentences, every variant")
    if data.finals.empty:
        sec.missing = "No finished final runs."
        return sec
    first_seed = data.finals[data.finals["seed"] == data.finals["seed"].min()]
    for dataset in sorted(first_seed["dataset"].unique()):
        runs = first_seed[first_seed["dataset"] == dataset]
        split = "test_2016_flickr" if dataset == "main" else "test"
        found = json_artifacts(data.tracker, runs, f"attention_maps/{split}.json")
        by_variant = {
            runs[runs["run_id"] == rid]["attention"].iloc[0]: maps for rid, maps in found.items()
        }
        if not by_variant:
            sec.say(f"{dataset}: no attention maps were logged.", "missing")
            continue
        for i in range(min(count, *(len(m) for m in by_variant.values()))):
            sentence = {name: maps[i] for name, maps in sorted(by_variant.items())}
            first = next(iter(sentence.values()))
            # the sentence as written; runs logged before it was stored show their pieces
            source = first.get("source_text") or " ".join(first["source"])
            sec.figure(plots.attention_maps(sentence), f"{dataset} / {split} #{i}: {source}")
    return sec


def repro_section(data: ReportData) -> Section:
    sec = Section("repro", "Reproducibility")
    env = {}
    if data.tracker.has_artifact(data.parent_run_id, "environment.json"):
        env = data.tracker.load_json_artifact(data.parent_run_id, "environment.json")
    else:
        sec.say("The pipeline run logged no environment record.", "missing")
    seeds = data.config.get("benchmark", {}).get("seeds")
    sigs = sorted(
        {v for c in data.finals if c.endswith("_signature") for v in data.finals[c].dropna()}
    )
    hardware = env.get("cuda") or env.get("platform", "?")
    sec.say(
        f"Git commit {env.get('git_commit', '?')}; seeds {seeds}; hardware: {hardware}, "
        f"{env.get('cpu_threads', '?')} CPU threads."
    )
    if sigs:
        sec.table(pd.DataFrame({"sacreBLEU signatures": sigs}))
    sec.code.append({"title": "Reproduce", "text": "attnbench run --config config.yaml"})
    sec.code.append(
        {"title": "config.yaml (resolved)", "text": yaml.safe_dump(data.config, sort_keys=False)}
    )
    sec.code.append({"title": "environment", "text": json.dumps(env, indent=1)})
    return sec


def render(data: ReportData, title: str, sections: list[Section], folder: Path) -> Path:
    """Write `folder`/index.html (one self-contained page) and the run's resolved config."""
    env = Environment(
        loader=PackageLoader("attnbench.report", "templates"), autoescape=select_autoescape()
    )
    html = env.get_template("report.html.j2").render(
        title=title,
        parent_run_id=data.parent_run_id,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        tracking_uri=data.tracker.tracking_uri,
        sections=sections,
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.html"
    path.write_text(html, encoding="utf-8")
    (folder / "config.yaml").write_text(yaml.safe_dump(data.config, sort_keys=False))
    return path


def write_html(tracker: Tracker, parent_run_id: str, folder: Path) -> Path:
    """Render index.html for one pipeline run into `folder`."""
    data = ReportData.load(tracker, parent_run_id)
    sections = [
        verdict_section(data), cost_section(data), curves_section(data), tuning_section(data),
        length_section(data), bench_section(data), maps_section(data), repro_section(data),
    ]  # fmt: skip
    title = f"{tracker.experiment}: additive vs multiplicative attention"
    return render(data, title, sections, folder)
