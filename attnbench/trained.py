"""A finished run, loaded back from its directory: model + config + tokenizers, and scoring
it on named splits. What `attnbench evaluate` and the orchestration's evaluation step use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnbench.checkpoint import load_checkpoint
from attnbench.config import ExperimentConfig, validate_config
from attnbench.data.prepare import evaluation_splits, load_split
from attnbench.data.tokenizer import Tokenizer, load_tokenizer
from attnbench.errors import UserError
from attnbench.evaluate import Translations, bleu_by_length, corpus_scores, exact_match, translate
from attnbench.models import Seq2Seq, build_model


@dataclass
class TrainedModel:
    model: Seq2Seq
    config: ExperimentConfig
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    checkpoint: Path


@dataclass
class SplitResult:
    split: str
    scores: dict[str, Any]
    translations: Translations
    by_length: list[dict[str, Any]]


def load_trained(checkpoint: Path, device: torch.device | str = "cpu") -> TrainedModel:
    """Load `best.pt` (or any attnbench checkpoint) with the tokenizers saved beside it."""
    checkpoint = Path(checkpoint)
    state = load_checkpoint(checkpoint, map_location=device)
    cfg = validate_config(state.get("config", {}), origin=f"config stored in {checkpoint}")
    toks = []
    for key, default in (("src_tokenizer", "src.model"), ("tgt_tokenizer", "tgt.model")):
        path = checkpoint.parent / str(state.get(key, default))
        if not path.is_file():
            raise UserError(f"tokenizer {path} is missing beside {checkpoint}; copy the whole run")
        toks.append(load_tokenizer(path))
    model = build_model(cfg.model, toks[0].vocab_size, toks[1].vocab_size)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint {checkpoint} does not match its stored config") from exc
    return TrainedModel(model.to(device).eval(), cfg, toks[0], toks[1], checkpoint)


def evaluate_split(
    trained: TrainedModel,
    split: str,
    device: torch.device | str = "cpu",
    beam_size: int | None = None,
    progress: bool = False,
) -> SplitResult:
    """Decode one split and score it: BLEU/chrF/TER (+ signatures), exact match, by length."""
    cfg = trained.config
    corpus = load_split(cfg.data, split)
    out = translate(
        trained.model, corpus, trained.src_tok, trained.tgt_tok, cfg.eval, device, beam_size,
        progress=progress,
    )  # fmt: skip
    scores = corpus_scores(out.hypotheses, out.references)
    scores["exact_match"] = exact_match(out.hypotheses, out.references)
    scores["sentences"] = len(corpus)
    buckets = bleu_by_length(
        out.source_lengths, out.hypotheses, out.references, cfg.eval.length_buckets
    )
    return SplitResult(split, scores, out, buckets)


def default_test_splits(trained: TrainedModel) -> list[str]:
    return evaluation_splits(trained.config.data)
