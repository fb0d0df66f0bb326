"""Holm's correction and the reports' significance verdicts on known inputs."""

from __future__ import annotations

import pandas as pd
import pytest

from attnbench.report.significance import comparisons, holm


def test_holm_on_a_worked_example():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([0.02]) == [0.02] and holm([]) == []


def test_holm_keeps_the_order_and_never_lowers_a_p_value():
    import itertools
    import random

    rng = random.Random(0)
    for _ in range(50):
        p = [rng.random() for _ in range(rng.randint(1, 12))]
        adjusted = holm(p)
        assert all(a >= q for a, q in zip(adjusted, p, strict=True))
        ranked = sorted(zip(p, adjusted, strict=True))
        assert all(a <= b for (_, a), (_, b) in itertools.pairwise(ranked))


def _tests(scores: dict[str, dict[str, float]], p: dict[str, dict[str, float]]) -> dict:
    """The stored paired-test layout: {seed: {system: {"bleu": {"score", "p_value"}}}}."""
    return {
        seed: {
            system: {"bleu": {"score": score, "p_value": p[seed].get(system)}}
            for system, score in systems.items()
        }
        for seed, systems in scores.items()
    }


SCORES = {  # general: lower in seed 1, higher in seeds 2 and 3; dot lower in every seed
    "1": {"additive": 70.0, "general": 44.0, "dot": 31.0},
    "2": {"additive": 42.0, "general": 50.0, "dot": 40.0},
    "3": {"additive": 60.0, "general": 64.0, "dot": 47.0},
}
P = {
    "1": {"general": 0.001, "dot": 0.001},
    "2": {"general": 0.001, "dot": 0.08},
    "3": {"general": 0.04, "dot": 0.001},
}


def test_comparisons_adjust_over_every_seed_and_system():
    frame = comparisons(_tests(SCORES, P), "additive")
    assert len(frame) == 6 and "additive" not in set(frame["system"])
    row = frame.set_index(["seed", "system"]).loc[("2", "general")]
    assert row["diff"] == pytest.approx(8.0) and row["baseline_score"] == 42.0
    assert frame["p_holm"].tolist() == pytest.approx(holm(frame["p"].tolist()))
    # 0.04 is below 0.05 alone but not after the correction (2 x 0.04 at the least)
    assert not frame.set_index(["seed", "system"]).loc[("3", "general"), "significant"]
    assert frame["significant"].sum() == 4


def test_summary_table_judges_on_the_adjusted_p_values():
    from attnbench.report.summary import significance_tables

    text = significance_tables({"test": _tests(SCORES, P)}, "additive")
    assert "**test**: paired bootstrap per seed, Holm over 6 tests" in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| general |")]
    assert [r[1] for r in rows] == ["1", "2", "3"]  # grouped by variant, seeds in order
    # seed 1 lower, seed 2 higher: both significant, each with its direction
    assert rows[0][4:] == ["-26.00", "0.0010", "0.0060", "yes, lower |"]
    assert rows[1][4:] == ["+8.00", "0.0010", "0.0060", "yes, higher |"]
    # raw p 0.04 is fifth of the six sorted p-values: Holm gives max(0.006, 2 x 0.04) = 0.08
    assert rows[2][4:] == ["+4.00", "0.0400", "0.0800", "no |"]


def test_html_verdict_says_when_seeds_disagree_on_the_direction():
    from attnbench.report.html import ReportData, verdict_section

    finals = pd.DataFrame(
        [
            {"dataset": "reverse", "attention": system, "seed": seed,
             "metrics.test/test/bleu": score}
            for seed, systems in SCORES.items()
            for system, score in systems.items()
        ]
    )  # fmt: skip
    significance = {"reverse": {"test": _tests(SCORES, P)}}
    config = {"benchmark": {"baseline": "additive"}}
    data = ReportData(None, "parent", config, finals, pd.DataFrame(), pd.DataFrame(), significance)
    verdicts = [p["text"] for p in verdict_section(data).paragraphs if p["cls"] == "verdict"]
    assert len(verdicts) == 1
    # general's mean is 52.67 against 57.33: lower on average, yet significantly higher in
    # seed 2; seed 3's p = 0.04 does not survive Holm's correction
    general = ("general is 4.67 BLEU lower than additive on average; lower significantly in "
               "1 of 3 seeds, higher significantly in 1 (Holm over 6 tests).")  # fmt: skip
    dot = ("dot is 18.00 BLEU lower than additive on average; lower significantly in 2 of 3 "
           "seeds (Holm over 6 tests).")  # fmt: skip
    assert general in verdicts[0] and dot in verdicts[0]
