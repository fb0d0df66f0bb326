"""The Britz et al. attention-dimension sweep: the grid, the claims, and a tiny run end to end."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from attnbench.config import config_to_dict, load_config
from attnbench.errors import UserError
from attnbench.report.britz import SweepData, claims, side_by_side
from attnbench.sweep import comparisons, sweep_cells
from attnbench.tuning import apply_settings


def _flat(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("preset", ["britz-sweep", "britz-sweep-cpu"])
def test_every_cell_differs_only_in_variant_dimension_and_seed(preset):
    cfg = load_config(preset=preset)
    cells = sweep_cells(cfg)
    assert len(cells) == 3 * 4 * 3 == len(set(cells))
    assert {c.variant for c in cells} == {"additive", "general", "scaled_dot"}
    assert {c.attn_dim for c in cells} == {128, 256, 512, 1024}
    resolved = [
        dict(_flat(config_to_dict(apply_settings(cfg, {
            "model.attention": c.variant, "model.attn_dim": c.attn_dim, "train.seed": c.seed,
        })))) for c in cells
    ]  # fmt: skip
    for a, b in itertools.combinations(resolved, 2):
        differ = {k for k in a if a[k] != b[k]}
        assert differ <= {"model.attention", "model.attn_dim", "train.seed"}, differ


def test_a_config_without_dimensions_is_refused_with_the_fix():
    with pytest.raises(UserError, match=r"sweep\.attn_dims"):
        sweep_cells(load_config(preset="quick"))


def test_a_cell_that_cannot_be_built_is_refused_before_any_training():
    cfg = load_config(
        preset="britz-sweep-cpu", overrides=["model.num_heads=2", "sweep.attn_dims=[8, 33]"]
    )
    with pytest.raises(UserError, match=r"additive@33 cannot be built.*divisible by num_heads"):
        sweep_cells(cfg)


def test_comparisons_cover_each_claim():
    pairs = comparisons(load_config(preset="britz-sweep"))
    groups = dict(pairs)
    assert len(groups) == len(pairs)  # one group per baseline: none overwrites another
    assert {"general@128", "scaled_dot@128", "additive@1024"} <= set(groups["additive@128"])
    assert {"scaled_dot@1024", "general@128"} <= set(groups["scaled_dot@128"])
    assert groups["additive@1024"] == ["general@1024", "scaled_dot@1024"]
    assert groups["general@128"] == ["general@256", "general@512", "general@1024"]
    assert groups["scaled_dot@1024"] == ["general@1024"]


def _sweep(bleu: dict[str, dict[int, float]], p_differ: float = 0.001) -> SweepData:
    """Three seeds per cell around the given means; a paired test gives p_differ where the
    two means differ by at least 1 BLEU, else p = 0.4."""
    rows = [
        {"variant": v, "attn_dim": d, "seed": s, "bleu": m + (s - 2) * 0.1}
        for v, per_dim in bleu.items() for d, m in per_dim.items() for s in (1, 2, 3)
    ]  # fmt: skip
    cells = pd.DataFrame(rows)
    cfg = load_config(preset="britz-sweep", overrides=["sweep.attn_dims=[128, 1024]"])

    def score(name: str) -> float:
        variant, dim = name.split("@")
        return bleu[variant][int(dim)]

    significance = {}
    for baseline, others in comparisons(cfg):
        tests = {baseline: {"bleu": {"score": score(baseline), "p_value": None}}}
        for name in others:
            p = p_differ if abs(score(name) - score(baseline)) >= 1.0 else 0.4
            tests[name] = {"bleu": {"score": score(name), "p_value": p}}
        significance[baseline] = {str(s): tests for s in (1, 2, 3)}
    return SweepData(cells, "test_2016_flickr", significance)


BRITZ_SHAPE = {
    "additive": {128: 22.2, 1024: 22.1},
    "general": {128: 22.0, 1024: 18.2},
    "scaled_dot": {128: 22.1, 1024: 22.0},
}


def test_the_published_shape_makes_every_claim_hold():
    verdicts = [c["verdict"] for c in claims(_sweep(BRITZ_SHAPE))]
    assert verdicts == ["holds here"] * 4


def test_no_collapse_means_the_collapse_claims_fail():
    flat = {v: {128: 22.0, 1024: 22.0} for v in BRITZ_SHAPE}
    verdicts = {c["claim"].split(":")[1][:30]: c["verdict"] for c in claims(_sweep(flat))}
    assert list(verdicts.values()) == [
        "holds here", "does not hold here", "does not hold here", "does not hold here",
    ]  # fmt: skip


def test_claims_that_differences_support_need_them_after_holms_correction():
    """p = 0.02 in each of three seeds is significant alone, not after Holm (3 x 0.02): the
    collapse claims no longer hold, while 'additive is flat' (which a difference would
    refute) keeps raw p and still holds."""
    verdicts = [c["verdict"] for c in claims(_sweep(BRITZ_SHAPE, p_differ=0.02))]
    assert verdicts == ["holds here"] + ["does not hold here"] * 3
    evidence = claims(_sweep(BRITZ_SHAPE, p_differ=0.02))[1]["evidence"]
    assert "-3.80 (p=0.020, Holm 0.060)" in evidence


def test_scaling_claim_fails_when_scaled_dot_itself_drops():
    dropping = {**BRITZ_SHAPE, "scaled_dot": {128: 22.1, 1024: 20.0}}
    verdicts = [c["verdict"] for c in claims(_sweep(dropping))]
    assert verdicts[-1] == "does not hold here"
    sweep = _sweep(BRITZ_SHAPE)
    del sweep.significance["scaled_dot@128"]  # no test of scaled_dot against itself
    assert claims(sweep)[-1]["verdict"] == "cannot tell here"


def test_side_by_side_table_puts_published_beside_measured():
    table = side_by_side(_sweep(BRITZ_SHAPE).cells).set_index("attention dim")
    assert table.loc["1024", "Britz general"] == "18.22 ± 0.03"
    assert table.loc["1024", "attnbench general"] == "18.20 ± 0.10 (n=3)"
    assert table.loc["256", "attnbench general"] == "–"  # not run here


TINY_SWEEP = [
    "data.train_limit=300",
    "data.val_limit=30",
    "data.test_limit=40",
    "data.src_vocab_size=300",
    "data.tgt_vocab_size=300",
    "model.emb_dim=16",
    "model.hidden_dim=16",
    "train.epochs=1",
    "benchmark.seeds=[1, 2]",
    "sweep.attn_dims=[8, 32]",
    "sweep.mechanism_sentences=20",
    "eval.beam_size=1",
]


@pytest.mark.slow
def test_a_tiny_sweep_runs_end_to_end_on_two_workers_and_its_report_renders(
    prefect_harness, tmp_path, shared_data, monkeypatch
):
    monkeypatch.setenv("ATTNBENCH_DATA_DIR", str(shared_data))
    from attnbench.tracking import Tracker
    from flows.sweep import sweep_flow

    out = sweep_flow(
        preset="britz-sweep-cpu", overrides=TINY_SWEEP, workdir=str(tmp_path / "work"),
        reports_dir=str(tmp_path / "reports"), parallel=2,
    )  # fmt: skip
    assert out["cells"] == 3 * 2 * 2
    tracker = Tracker.local(tmp_path / "work", "attnbench-britz-sweep-cpu")
    runs = tracker.search_runs("tags.kind = 'final'")
    assert len(runs) == 12 and (runs["status"] == "FINISHED").all()
    assert set(runs["tags.attn_dim"]) == {"8", "32"}
    assert runs["metrics.mechanism/entropy"].notna().all()
    assert tracker.has_artifact(out["parent_run_id"], "significance/sweep.json")
    html = (tmp_path / "reports").glob("attnbench-britz-sweep-cpu/*/index.html")
    text = next(html).read_text()
    for needed in ('id="britz"', 'id="mechanism"', "Britz general", "attnbench scaled_dot",
                   "collapses at the largest dimension", "data:image/png;base64"):  # fmt: skip
        assert needed in text, needed
    assert "No finished sweep runs" not in text
