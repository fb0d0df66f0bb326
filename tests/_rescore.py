"""Checks that a run's logged scores are sacrebleu's scores of the hypotheses it logged."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


def assert_scores_match_logged_hypotheses(
    tracker, runs: pd.DataFrame, overrides: list[str], split: str, sentences: int
) -> None:
    """Re-score each run's logged hypotheses against the split's references (the quick preset
    with `overrides`, data from $ATTNBENCH_DATA_DIR) with sacrebleu: BLEU and chrF equal."""
    import sacrebleu

    from attnbench.config import load_config
    from attnbench.data.prepare import load_split

    refs = load_split(load_config(preset="quick", overrides=overrides).data, split).tgt
    assert len(runs) > 0
    for _, run in runs.iterrows():
        text = tracker.client.download_artifacts(run["run_id"], f"hypotheses/{split}.txt")
        hyps = Path(text).read_text(encoding="utf-8").splitlines()
        assert len(hyps) == len(refs) == sentences
        bleu, chrf = sacrebleu.corpus_bleu(hyps, [refs]), sacrebleu.corpus_chrf(hyps, [refs])
        assert run[f"metrics.test/{split}/bleu"] == pytest.approx(bleu.score, abs=1e-9)
        assert run[f"metrics.test/{split}/chrf"] == pytest.approx(chrf.score, abs=1e-9)
        assert chrf.score > 0  # a tiny model's BLEU may be 0; its chrF is not
