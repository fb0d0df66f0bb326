"""Scoring helpers: sacrebleu metrics, exact match, length buckets, paired significance."""

from __future__ import annotations

import pytest
from sacrebleu.metrics import BLEU

from attnbench.evaluate import (
    bleu_by_length,
    corpus_scores,
    exact_match,
    length_buckets,
    paired_significance,
)

REFS = [
    "Ein Mann fährt mit dem Fahrrad die Straße entlang.",
    "Zwei Hunde spielen im Schnee.",
    "Eine Frau liest ein Buch im Park.",
    "Kinder spielen Fußball auf einer Wiese.",
]


def test_perfect_output_scores_perfectly_with_signatures():
    scores = corpus_scores(REFS, REFS)
    assert scores["bleu"] == pytest.approx(100.0)
    assert scores["chrf"] == pytest.approx(100.0)
    assert scores["ter"] == pytest.approx(0.0)
    assert scores["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert scores["chrf_signature"] and scores["ter_signature"]


def test_scores_equal_sacrebleu_on_detokenised_text():
    hyps = [
        "Ein Mann fährt Fahrrad.",
        "Zwei Hunde spielen im Schnee.",
        "Eine Frau liest.",
        "Kinder.",
    ]
    expected = BLEU().corpus_score(hyps, [REFS]).score
    assert corpus_scores(hyps, REFS)["bleu"] == pytest.approx(expected)
    assert 0 < expected < 100


def test_exact_match_counts_identical_outputs():
    assert exact_match(["a b", "c  d", "e"], ["a b", "c d", "f"]) == pytest.approx(2 / 3)
    assert exact_match([], []) == 0.0


def test_length_buckets_are_half_open_and_cover_everything():
    assert length_buckets([20, 10]) == [(0, 10), (10, 20), (20, None)]
    rows = bleu_by_length([3, 12, 15, 40], REFS, REFS, [10, 20, 30])
    assert [(r["bucket"], r["n"]) for r in rows] == [("0-9", 1), ("10-19", 2), ("30+", 1)]
    assert all(r["bleu"] == pytest.approx(100.0) and r["exact_match"] == 1.0 for r in rows)


def test_paired_bootstrap_separates_a_better_system_from_an_equal_one():
    refs = [f"das ist satz nummer {i} mit einigen worten darin" for i in range(60)]
    good = list(refs)
    bad = [f"das ist ein anderer satz {i}" for i in range(60)]
    # as good as the baseline overall: right where it is wrong, wrong where it is right
    base = [good[i] if i % 2 else bad[i] for i in range(60)]
    swapped = [bad[i] if i % 2 else good[i] for i in range(60)]
    out = paired_significance(
        refs, {"base": base, "swapped": swapped, "better": good}, baseline="base"
    )
    assert out["base"]["bleu"]["p_value"] is None
    assert out["swapped"]["bleu"]["p_value"] > 0.05
    assert out["better"]["bleu"]["p_value"] < 0.01
    assert out["better"]["bleu"]["score"] == pytest.approx(100.0)
    assert out["better"]["chrf"]["ci"] is not None


def test_significance_needs_a_known_baseline():
    with pytest.raises(ValueError, match="baseline"):
        paired_significance(REFS, {"a": REFS}, baseline="b")
