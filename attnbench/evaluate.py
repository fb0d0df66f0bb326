"""Decoding and scoring: sacrebleu BLEU/chrF/TER with signatures, exact match, length buckets,
and paired significance through `sacrebleu.significance`.

Scores are always computed on detokenised output against the raw reference text, so they
are comparable with published sacreBLEU numbers regardless of the subword model.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.significance import PairedTest
from tqdm.auto import tqdm

from attnbench.config import EvalConfig
from attnbench.data.batching import encode_corpus, make_batches
from attnbench.data.corpus import ParallelCorpus
from attnbench.data.tokenizer import Tokenizer
from attnbench.models import Seq2Seq, beam_search, greedy_search


@dataclass
class Translations:
    """Outputs in corpus order. weights[i]: (output steps, source length incl. EOS)."""

    sources: list[str]
    references: list[str]
    hypotheses: list[str]
    source_lengths: list[int]
    weights: list[torch.Tensor]


@torch.no_grad()
def translate(
    model: Seq2Seq,
    corpus: ParallelCorpus,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    cfg: EvalConfig,
    device: torch.device | str = "cpu",
    beam_size: int | None = None,
    progress: bool = False,
) -> Translations:
    """Decode every source sentence (beam search, or greedy when the beam is 1)."""
    model.eval()
    beam = cfg.beam_size if beam_size is None else beam_size
    pairs = encode_corpus(corpus, src_tok, tgt_tok)
    batches = make_batches(pairs, batch_size=cfg.batch_size, shuffle=False)
    hyps: list[str] = [""] * len(corpus)
    weights: list[torch.Tensor] = [torch.empty(0)] * len(corpus)
    lengths = [0] * len(corpus)
    for batch in tqdm(batches, desc=f"decode {corpus.name}", disable=not progress, leave=False):
        batch = batch.to(device)
        if beam == 1:
            out = greedy_search(model, batch.src, batch.src_lengths, cfg.max_len_a, cfg.max_len_b)
        else:
            out = beam_search(
                model,
                batch.src,
                batch.src_lengths,
                beam,
                cfg.length_penalty,
                cfg.max_len_a,
                cfg.max_len_b,
            )
        for row, hyp in zip(batch.indices, out, strict=True):
            hyps[row] = tgt_tok.decode(hyp.tokens)
            weights[row] = hyp.weights
            lengths[row] = len(pairs[row][0])
    return Translations(list(corpus.src), list(corpus.tgt), hyps, lengths, weights)


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, float | str]:
    """BLEU, chrF and TER with each metric's sacrebleu signature (for reproducibility)."""
    out: dict[str, float | str] = {}
    for key, metric in (("bleu", BLEU()), ("chrf", CHRF()), ("ter", TER())):
        out[key] = float(metric.corpus_score(hypotheses, [references]).score)
        out[f"{key}_signature"] = str(metric.get_signature())
    return out


def exact_match(hypotheses: list[str], references: list[str]) -> float:
    """Share of outputs identical to the reference (whitespace-normalised): synthetic tasks."""
    if not references:
        return 0.0
    same = sum(h.split() == r.split() for h, r in zip(hypotheses, references, strict=True))
    return same / len(references)


def length_buckets(edges: list[int]) -> list[tuple[int, int | None]]:
    """[10, 20] -> [(0, 10), (10, 20), (20, None)]: half-open [lo, hi) source-length ranges."""
    bounds = [0, *sorted(edges)]
    return [*pairwise(bounds), (bounds[-1], None)]


def bleu_by_length(
    source_lengths: list[int], hypotheses: list[str], references: list[str], edges: list[int]
) -> list[dict[str, float | int | str]]:
    """Corpus BLEU and exact match inside each source-length bucket (empty buckets skipped)."""
    rows = []
    for lo, hi in length_buckets(edges):
        idx = [i for i, n in enumerate(source_lengths) if n >= lo and (hi is None or n < hi)]
        if not idx:
            continue
        h = [hypotheses[i] for i in idx]
        r = [references[i] for i in idx]
        rows.append(
            {
                "bucket": f"{lo}-{hi - 1}" if hi is not None else f"{lo}+",
                "lo": lo,
                "n": len(idx),
                "bleu": float(BLEU().corpus_score(h, [r]).score),
                "exact_match": exact_match(h, r),
            }
        )
    return rows


def paired_significance(
    references: list[str],
    systems: dict[str, list[str]],
    baseline: str,
    test_type: str = "bs",
    n_samples: int = 1000,
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Paired bootstrap ("bs") or approximate randomisation ("ar") of each system vs baseline.

    Returns {system: {metric: {score, p_value, mean, ci}}}; the baseline has no p-value.
    Note sacrebleu's (multeval's) convention: a system identical to the baseline gets the
    smallest p-value, 1 / (n + 1), since a zero difference "should not be attributed to chance".
    """
    if baseline not in systems:
        raise ValueError(f"baseline {baseline!r} is not among the systems {sorted(systems)}")
    named = [(baseline, systems[baseline])] + [(n, h) for n, h in systems.items() if n != baseline]
    metrics = {"bleu": BLEU(), "chrf": CHRF()}
    _, table = PairedTest(
        named, metrics, references=[references], test_type=test_type, n_samples=n_samples
    )()
    # the table is keyed by each metric's display name ("BLEU", "chrF2"), in metrics' order
    columns = dict(zip(metrics, [c for c in table if c != "System"], strict=True))
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for i, name in enumerate(table["System"]):
        out[str(name)] = {
            key: {
                "score": float(table[col][i].score),
                "p_value": table[col][i].p_value,
                "mean": table[col][i].mean,
                "ci": table[col][i].ci,
            }
            for key, col in columns.items()
        }
    return out
