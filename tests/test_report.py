"""Report statistics on known inputs, and reports of incomplete pipeline runs."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from attnbench.config import load_config
from attnbench.errors import UserError
from attnbench.pipeline import report
from attnbench.results import mean_ci, summarise
from attnbench.tracking import Tracker


def test_mean_ci_uses_the_t_distribution():
    out = mean_ci(pd.Series([1.0, 2.0, 3.0]))
    assert out["n"] == 3 and out["mean"] == 2.0 and out["std"] == pytest.approx(1.0)
    assert out["ci95"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # t(0.975, 2)
    single = mean_ci(pd.Series([5.0]))
    assert single["mean"] == 5.0 and math.isnan(single["std"]) and math.isnan(single["ci95"])


def test_summarise_groups_per_dataset_split_attention_and_metric():
    scores = pd.DataFrame(
        [
            ("main", "t", "dot", s, "bleu", v)
            for s, v in ((1, 10.0), (2, 12.0), (3, 14.0))
        ] + [("main", "t", "additive", 1, "bleu", 20.0)],
        columns=["dataset", "split", "attention", "seed", "metric", "value"],
    )  # fmt: skip
    out = summarise(scores).set_index("attention")
    assert out.loc["dot", "mean"] == 12.0 and out.loc["dot", "std"] == 2.0
    assert out.loc["dot", "n"] == 3 and out.loc["additive", "n"] == 1


def test_a_pipeline_run_without_results_gets_a_report_that_says_so(tmp_path):
    cfg = load_config(preset="quick")
    tracker = Tracker.local(tmp_path / "work", "attnbench-quick")
    parent = tracker.start_run("benchmark-quick", tags={"kind": "pipeline"})
    tracker.end_run(parent)
    path = report(cfg, tmp_path / "work", tmp_path / "reports", None)
    html = path.read_text()
    assert path.name == "index.html"
    for text in (
        "No finished final runs",
        "No trial runs in MLflow",
        "This pipeline run has no benchmark step results",
        "logged no environment record",
    ):
        assert text in html, text
    assert (path.parent / "summary.md").is_file()


def test_report_refuses_an_experiment_name_that_is_a_path(tmp_path):
    with pytest.raises(UserError, match="not a plain name"):
        report(load_config(preset="quick"), tmp_path, tmp_path / "r", None, experiment="../x")


def test_length_section_plots_bleu_when_no_synthetic_task_was_run(tmp_path):
    """A run of real corpora only has no `test` split, so no exact-match column exists."""
    from attnbench.report.html import ReportData, length_section

    tracker = Tracker.local(tmp_path / "work", "attnbench-m")
    parent = tracker.start_run("benchmark-m", tags={"kind": "pipeline"})
    buckets = [{"lo": 1, "bucket": "1-10", "sentences": 3, "bleu": 20.0, "exact_match": 0.0}]
    for attention in ("additive", "dot"):
        child = tracker.start_run(
            f"final-{attention}",
            parent,
            {"kind": "final", "dataset": "multi30k", "attention": attention, "seed": "1"},
        )
        tracker.log_metrics(child, {"test/test_2016_flickr/bleu": 20.0})
        tracker.log_dict(child, buckets, "by_length/test_2016_flickr.json")
        tracker.end_run(child)
    tracker.end_run(parent)
    section = length_section(ReportData.load(tracker, parent))
    assert section.missing == ""
    assert [f["alt"] for f in section.figures] == ["multi30k: bleu by source length"]


def _bench_report_data(tmp_path, rows):
    """A pipeline run whose benchmark child holds `rows` as its rows.parquet artifact."""
    from attnbench.report.html import ReportData

    tracker = Tracker.local(tmp_path / "work", "attnbench-b")
    parent = tracker.start_run("benchmark-b", tags={"kind": "pipeline"})
    child = tracker.start_run("bench/attention", parent, {"kind": "bench", "device": "cpu"})
    path = tmp_path / "rows.parquet"
    rows.to_parquet(path)
    tracker.log_artifact(child, path, "bench")
    tracker.end_run(child)
    tracker.end_run(parent)
    return ReportData.load(tracker, parent)


COMMITTED_CPU_ROWS = Path(__file__).resolve().parents[1] / "reports/benchmarks/cpu/rows.parquet"


def test_bench_section_shows_backward_and_what_the_key_projection_saves(tmp_path):
    """A benchmark step that timed forward, backward and the full model gets all three."""
    from attnbench.report.html import bench_section

    rows = pd.read_parquet(COMMITTED_CPU_ROWS)
    section = bench_section(_bench_report_data(tmp_path, rows))
    assert section.missing == ""
    assert [f["alt"].split(":")[0] for f in section.figures] == [
        "Attention alone, forward", "Forward + backward"
    ]  # fmt: skip
    text = " ".join(p["text"] for p in section.paragraphs)
    assert "key projection computed once per source" in text
    pairs = rows[rows["comparison"] == "key_projection"].groupby(["src_len", "tgt_len"])
    for (src, tgt), pair in pairs:  # every measured length, with its own ratio
        side = pair.set_index("implementation")["tokens_per_s"]
        ratio = side["keys_once"] / side["keys_per_step"]
        assert f"{ratio:.2f}x with {src:.0f} source and {tgt:.0f} target tokens" in text
    full_model = section.tables[-1]
    assert full_model["caption"].startswith("Full model")
    assert "keys_per_step" in full_model["html"] and "greedy_decode" in full_model["html"]


def test_bench_section_with_only_full_model_rows_is_not_missing(tmp_path):
    from attnbench.report.html import bench_section

    rows = pd.read_parquet(COMMITTED_CPU_ROWS)
    rows = rows[~rows["mode"].isin(["forward", "backward"])]
    section = bench_section(_bench_report_data(tmp_path, rows))
    assert section.missing == "" and section.figures == []
    assert section.tables[-1]["caption"].startswith("Full model")


def test_full_model_rows_become_dashboard_metrics():
    from attnbench.pipeline import full_model_metrics

    rows = pd.read_parquet(COMMITTED_CPU_ROWS)
    model_rows = rows[~rows["mode"].isin(["forward", "backward"])]
    metrics = full_model_metrics(rows.to_dict("records"))
    assert len([k for k in metrics if k.endswith("/tokens_per_s")]) == len(model_rows)  # unique
    pairs = model_rows[model_rows["comparison"] == "key_projection"]
    for (src, tgt), pair in pairs.groupby(["src_len", "tgt_len"]):
        pair = pair.set_index("implementation")
        once = f"bench/model/key_projection/additive/keys_once/src{src:.0f}_tgt{tgt:.0f}"
        assert metrics[f"{once}/speedup"] == pytest.approx(pair.loc["keys_once", "speedup"])
        assert metrics[f"{once}/tokens_per_s"] == pytest.approx(
            pair.loc["keys_once", "tokens_per_s"]
        )
    assert not [k for k in metrics if "keys_per_step" in k and k.endswith("/speedup")]
    assert "bench/model/greedy_decode/scaled_dot/keys_once/src40_tgt20/tokens_per_s" in metrics
    assert full_model_metrics([]) == {}


def _trials(completed: int) -> pd.DataFrame:
    """Trial runs of two studies as MLflow lists them: `completed` finished trials each with
    the same (seeded) parameters, one pruned trial each."""
    import random

    rng = random.Random(0)
    params = [(10 ** rng.uniform(-4, -2), rng.uniform(0, 0.5)) for _ in range(completed + 1)]
    rows = []
    for attention in ("additive", "dot"):
        for trial, (lr, dropout) in enumerate(params):
            rows.append({
                "dataset": "main", "attention": attention, "trial": trial,
                "trial_state": "PRUNED" if trial == completed else "COMPLETE",
                "metrics.best/val/loss": 3 + 100 * lr + dropout + rng.random() / 10,
                "params.train.lr": str(lr), "params.model.dropout": str(dropout),
            })  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize("completed", [3, 12])
def test_tuning_section_tables_and_when_importances_say_little(completed):
    from attnbench.report.html import FEW_TRIALS, ReportData, tuning_section

    space = {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
             "model.dropout": {"type": "float", "low": 0.0, "high": 0.5}}  # fmt: skip
    config = {"tune": {"metric": "val/loss", "n_trials": completed + 1, "space": space}}
    data = ReportData(None, "p", config, pd.DataFrame(), _trials(completed), pd.DataFrame(), {})
    section = tuning_section(data)
    states, importance = section.tables
    assert "<th>state</th>" not in states["html"]  # the unstacked axis name is not a column
    assert "<th>COMPLETE</th>" in states["html"] and "<th>PRUNED</th>" in states["html"]
    assert f"<td>{completed}</td>" in importance["html"]  # the 'completed' column
    caveat = [p for p in section.paragraphs if "say little" in p["text"]]
    assert len(caveat) == (1 if completed < FEW_TRIALS else 0)
