"""The parent Prefect flow end to end on tiny data (Prefect's test harness, ephemeral), then
what MLflow holds: the parent run, a child per trial and per seed, curves, scores, models."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from tests._rescore import assert_scores_match_logged_hypotheses

TINY = [
    "data.train_limit=400",
    "data.val_limit=30",
    "data.test_limit=40",
    "data.src_vocab_size=300",
    "data.tgt_vocab_size=300",
    "model.emb_dim=32",
    "model.hidden_dim=32",
    "train.epochs=2",
    "tune.n_trials=2",
    "tune.epochs=2",
    "benchmark.variants=[additive, dot]",
    "benchmark.seeds=[1, 2]",
    "benchmark.bench_lengths=[32, 64]",
    "benchmark.bench_cell_seconds=0.05",
    "benchmark.datasets.reverse.synthetic.n_train=300",
    "benchmark.datasets.reverse.synthetic.n_test=40",
    "eval.beam_size=2",
]


@pytest.fixture(scope="session")
def benchmark_result(prefect_harness, tmp_path_factory, shared_data):
    from flows.benchmark import benchmark_flow

    base = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as patch:  # a session fixture: leave the env as it was
        patch.setenv("ATTNBENCH_DATA_DIR", str(shared_data))
        out = benchmark_flow(
            preset="quick",
            overrides=TINY,
            workdir=str(base / "work"),
            reports_dir=str(base / "rep"),
        )
    return out, base


def _sources() -> list[str]:
    """The main dataset's test_2016_flickr source sentences under TINY (shared data)."""
    from attnbench.config import load_config
    from attnbench.data.prepare import load_split

    return load_split(load_config(preset="quick", overrides=TINY).data, "test_2016_flickr").src


@pytest.mark.slow
def test_parent_flow_logs_the_whole_hierarchy_to_mlflow(benchmark_result, monkeypatch, shared_data):
    from attnbench.tracking import PARENT_TAG, Tracker

    out, base = benchmark_result
    tracker = Tracker.local(base / "work", "attnbench-quick")
    runs = tracker.search_runs()
    parent = runs[runs["run_id"] == out["parent_run_id"]].iloc[0]
    assert parent["tags.kind"] == "pipeline" and parent["status"] == "FINISHED"
    assert parent["tags.git_commit"] and parent["tags.prefect_flow_run_id"]
    children = runs[runs[f"tags.{PARENT_TAG}"] == out["parent_run_id"]]
    trials = children[children["tags.kind"] == "trial"]
    finals = children[children["tags.kind"] == "final"]
    assert len(trials) == 2 * 2 * 2  # datasets x variants x trials
    assert len(finals) == 2 * 2 * 2  # datasets x variants x seeds
    assert set(finals["tags.attention"]) == {"additive", "dot"}
    assert set(finals["tags.dataset"]) == {"main", "reverse"}
    assert (finals["status"] == "FINISHED").all()
    for column in ("tags.device", "tags.seed", "tags.decoder", "tags.git_commit"):
        assert finals[column].notna().all(), column
    main = finals[finals["tags.dataset"] == "main"]
    assert main["tags.test/test_2016_flickr/bleu_signature"].str.contains("nrefs:1").all()
    monkeypatch.setenv("ATTNBENCH_DATA_DIR", str(shared_data))
    assert_scores_match_logged_hypotheses(tracker, main, TINY, "test_2016_flickr", sentences=40)
    rev = finals[finals["tags.dataset"] == "reverse"]
    assert rev["metrics.test/test/exact_match"].notna().all()
    run_id = main["run_id"].iloc[0]
    for key in ("train/loss", "val/loss", "val/bleu"):
        assert [s for s, _ in tracker.metric_history(run_id, key)] == [1, 2], key
    artifacts = {a.path for a in tracker.client.list_artifacts(run_id)}
    assert {"config.json", "hypotheses", "attention_maps", "by_length"} <= artifacts
    maps = tracker.load_json_artifact(run_id, "attention_maps/test_2016_flickr.json")
    assert maps and [m["source_text"] for m in maps] == _sources()[: len(maps)]
    for m in maps:  # output x source weights, each row a distribution over the source
        assert len(m["weights"]) == len(m["output"])
        assert all(len(row) == len(m["source"]) for row in m["weights"])
        assert all(abs(sum(row) - 1) < 1e-2 for row in m["weights"])
    assert set(finals["run_id"]) <= tracker.runs_with_models()
    # the attention benchmark's child: how far the device's limits moved during it
    bench = children[children["tags.kind"] == "bench"]
    assert len(bench) == 1
    drift = bench[["metrics.bench/limit_drift/tanh", "metrics.bench/limit_drift/matmul"]].iloc[0]
    assert drift.notna().all() and (drift.abs() < 10).all()


@pytest.mark.slow
def test_report_step_wrote_its_output(benchmark_result, monkeypatch, shared_data):
    monkeypatch.setenv("ATTNBENCH_DATA_DIR", str(shared_data))  # the sources, for the captions

    out, base = benchmark_result
    report = Path(out["report"])
    assert report.name == "index.html" and report.is_relative_to(base / "rep")
    text = (report.parent / "summary.md").read_text()
    assert "### main / test_2016_flickr" in text and "| additive |" in text and "| dot |" in text
    assert "paired bootstrap per seed, Holm over 2 tests" in text and "| Holm p |" in text
    assert (report.parent / "scores.parquet").is_file()
    # the attention maps' captions are the source sentences as written, not subword pieces
    captions = re.findall(r'<figcaption class="muted">main / test_2016_flickr #\d: ([^<]*)<',
                          report.read_text())  # fmt: skip
    assert captions and captions == [html.escape(s) for s in _sources()[: len(captions)]]


@pytest.mark.slow
def test_tuning_gave_every_variant_the_same_budget(benchmark_result):
    out, _ = benchmark_result
    for dataset, variants in out["best"].items():
        budgets = {v: sum(r["states"].values()) for v, r in variants.items()}
        assert set(budgets.values()) == {2}, (dataset, budgets)


SECTIONS = ["verdict", "cost", "curves", "tuning", "length", "bench", "maps", "repro"]


@pytest.mark.slow
def test_html_report_in_a_real_browser(benchmark_result, tmp_path):
    """Headless Debian chromium (driven by Playwright, no browser download) opens the report:
    no console errors, no broken images, every section and plot present."""
    import shutil

    from playwright.sync_api import sync_playwright

    out, _ = benchmark_result
    chromium = shutil.which("chromium")
    assert chromium, "install Debian's chromium (`apt-get install chromium`; make test does)"
    report = Path(out["report"])
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        for section in SECTIONS:
            assert page.locator(f"section#{section} h2").count() == 1, section
            assert page.locator(f"section#{section} .missing").count() == 0, section
        images = page.locator("img")
        assert images.count() >= 7  # curves x2, history x2, length x2, bench, maps
        broken = page.evaluate(
            "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length"
        )
        assert broken == 0
        assert page.locator("section#bench img").count() == 1
        bench_text = page.locator("section#bench").inner_text()
        assert "Roofline" in bench_text and "threads" in bench_text  # limit share, hardware
        assert page.locator("section#maps img").count() >= 2
        assert "significant" in page.locator("section#verdict").inner_text()
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
