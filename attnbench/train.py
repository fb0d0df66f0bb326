"""The training loop: checkpoints every epoch, exact resume, early stopping, AMP on GPU.

A run directory holds everything needed to evaluate or resume it:
    config.yaml        the resolved config
    src.*, tgt.*       the tokenizers (.model SentencePiece, .json word)
    last.pt            full training state after the latest finished epoch (for --resume)
    best.pt            model weights of the best validation epoch (for evaluation)
    history.json       per-epoch metrics

Resume is exact: batch order depends only on (seed, epoch) and the RNG states are saved, so
an interrupted run resumed from `last.pt` ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from attnbench.checkpoint import load_checkpoint, save_checkpoint
from attnbench.config import ExperimentConfig, config_to_dict
from attnbench.data.batching import Batch, encode_corpus, make_batches
from attnbench.data.prepare import PreparedData, prepare_data
from attnbench.data.tokenizer import PAD_ID, SentencePieceTokenizer, Tokenizer
from attnbench.errors import UserError, check_folder
from attnbench.evaluate import corpus_scores, exact_match, translate
from attnbench.models import Seq2Seq, build_model, count_parameters
from attnbench.optim import adam

#: called after every epoch with (epoch, metrics); may raise to stop training (e.g. pruning)
EpochCallback = Callable[[int, dict[str, float]], None]

LAST, BEST = "last.pt", "best.pt"
log = logging.getLogger(__name__)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the settings, not the code, need changing."""


@dataclass
class TrainResult:
    out_dir: Path
    best_checkpoint: Path
    history: list[dict[str, float]]
    best_epoch: int
    best_score: float
    stopped: str
    num_parameters: int
    train_seconds: float
    train_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds else 0.0


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without it is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def tokenizer_filename(prefix: str, tok: Tokenizer) -> str:
    return f"{prefix}.model" if isinstance(tok, SentencePieceTokenizer) else f"{prefix}.json"


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _batches(pairs: list, cfg: ExperimentConfig, seed: int, shuffle: bool) -> list[Batch]:
    t = cfg.train
    return make_batches(
        pairs, max_tokens=t.batch_tokens, batch_size=t.batch_size, shuffle=shuffle, seed=seed
    )


def _loss_sum(model: Seq2Seq, batch: Batch, smoothing: float) -> torch.Tensor:
    """Summed (label-smoothed) cross-entropy over the batch's target tokens."""
    logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in, need_weights=False)
    return nn.functional.cross_entropy(
        logits.float().flatten(0, 1),
        batch.tgt_out.flatten(),
        ignore_index=PAD_ID,
        label_smoothing=smoothing,
        reduction="sum",
    )


@torch.no_grad()
def validation_loss(model: Seq2Seq, batches: Sequence[Batch], device: torch.device) -> float:
    """Mean per-token cross-entropy without label smoothing (comparable across settings)."""
    model.eval()
    total, tokens = 0.0, 0
    for batch in batches:
        batch = batch.to(device)
        total += float(_loss_sum(model, batch, 0.0))
        tokens += batch.num_target_tokens
    return total / max(tokens, 1)


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def _check_resume(out_dir: Path, cfg: ExperimentConfig, resume: bool) -> dict[str, Any] | None:
    check_folder(out_dir, "run directory (--out)")
    last = out_dir / LAST
    if not last.exists():
        return None
    if not resume:
        raise UserError(
            f"{out_dir} already holds a training run ({last.name}); pass --resume to continue "
            "it, or choose another --out directory"
        )
    state = load_checkpoint(last)
    saved = state.get("config", {})
    now = config_to_dict(cfg)
    for section in ("data", "model"):
        if saved.get(section) != now[section]:
            raise UserError(
                f"cannot resume {last}: its '{section}' settings differ from the config given; "
                "resume with the original config or start a new --out directory"
            )
    return state


def train(
    cfg: ExperimentConfig,
    out_dir: Path,
    resume: bool = False,
    data: PreparedData | None = None,
    callbacks: Sequence[EpochCallback] = (),
    progress: bool = True,
) -> TrainResult:
    """Train the configured model into `out_dir`; returns where the best weights are.

    `progress` shows a bar per epoch; each finished epoch is also logged (logger
    `attnbench.train`, level INFO).
    """
    out_dir = Path(out_dir)
    state = _check_resume(out_dir, cfg, resume)
    t = cfg.train
    device = resolve_device(t.device)
    if t.num_threads is not None:
        torch.set_num_threads(t.num_threads)
    data = data if data is not None else prepare_data(cfg.data)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    data.src_tok.save(out_dir / tokenizer_filename("src", data.src_tok))
    data.tgt_tok.save(out_dir / tokenizer_filename("tgt", data.tgt_tok))

    torch.manual_seed(t.seed)
    random.seed(t.seed)
    model = build_model(cfg.model, data.src_tok.vocab_size, data.tgt_tok.vocab_size).to(device)
    optimizer = adam(model.parameters(), lr=t.lr)
    higher_better = t.select_metric == "bleu"
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max" if higher_better else "min", factor=t.lr_decay, patience=0
    )
    train_pairs = encode_corpus(data.train, data.src_tok, data.tgt_tok, max_len=cfg.data.max_len)
    val_pairs = encode_corpus(data.val, data.src_tok, data.tgt_tok)
    val_batches = _batches(val_pairs, cfg, seed=0, shuffle=False)

    start_epoch, history = 1, []
    best_score, best_epoch, bad_epochs = -math.inf if higher_better else math.inf, 0, 0
    seconds, wall, tokens_seen = 0.0, 0.0, 0  # wall includes validation; seconds does not
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start_epoch = int(state["epoch"]) + 1
        history = list(state["history"])
        best_score, best_epoch = float(state["best_score"]), int(state["best_epoch"])
        bad_epochs = int(state["bad_epochs"])
        seconds, tokens_seen = float(state["seconds"]), int(state["tokens"])
        wall = float(state.get("wall", seconds))

    stopped = "epochs"
    if state is not None and state.get("stopped", "") not in ("", "epochs"):
        stopped = str(state["stopped"])  # a finished run stays finished
        start_epoch = t.epochs + 1
    for epoch in range(start_epoch, t.epochs + 1):
        model.train()
        batches = _batches(train_pairs, cfg, seed=t.seed * 100_003 + epoch, shuffle=True)
        epoch_loss, epoch_tokens, tic = 0.0, 0, time.perf_counter()
        bar = tqdm(batches, desc=f"epoch {epoch}/{t.epochs}", disable=not progress, leave=False)
        for step, batch in enumerate(bar):
            batch = batch.to(device)
            n_tokens = batch.num_target_tokens
            with _autocast(device, t.amp):
                loss_sum = _loss_sum(model, batch, t.label_smoothing)
            loss = loss_sum / n_tokens
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"training loss became {float(loss.detach())} at epoch {epoch}, step {step}; "
                    "lower train.lr or set train.clip_norm"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if t.clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), t.clip_norm)
            optimizer.step()
            epoch_loss += float(loss_sum.detach())
            epoch_tokens += n_tokens
            if step % 10 == 0:
                rate = epoch_tokens / max(time.perf_counter() - tic, 1e-9)
                bar.set_postfix(loss=f"{epoch_loss / epoch_tokens:.3f}", tok_s=f"{rate:,.0f}")
        epoch_seconds = time.perf_counter() - tic
        seconds += epoch_seconds
        tokens_seen += epoch_tokens

        metrics = {
            "epoch": float(epoch),
            "train/loss": epoch_loss / max(epoch_tokens, 1),
            "train/tokens_per_s": epoch_tokens / max(epoch_seconds, 1e-9),
            "train/epoch_seconds": epoch_seconds,
            "lr": optimizer.param_groups[0]["lr"],
            "val/loss": validation_loss(model, val_batches, device),
        }
        metrics.update(validation_scores(model, data, cfg, device))
        wall += time.perf_counter() - tic
        score = metrics["val/bleu"] if higher_better else metrics["val/loss"]
        improved = score > best_score if higher_better else score < best_score
        if improved:
            best_score, best_epoch, bad_epochs = score, epoch, 0
            save_checkpoint(_best_state(model, cfg, data, epoch, metrics), out_dir / BEST)
        else:
            bad_epochs += 1
        scheduler.step(score)
        history.append(metrics)
        log.info(_epoch_line(epoch, metrics))
        if bad_epochs >= t.patience:
            stopped = f"early stop: no better val/{t.select_metric} for {t.patience} epochs"
        elif t.max_minutes is not None and wall / 60 >= t.max_minutes:
            stopped = f"time budget of {t.max_minutes} minutes reached"
        save_checkpoint(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(),
                "epoch": epoch,
                "history": history,
                "best_score": best_score,
                "best_epoch": best_epoch,
                "bad_epochs": bad_epochs,
                "seconds": seconds,
                "wall": wall,
                "tokens": tokens_seen,
                "stopped": "" if stopped == "epochs" else stopped,
                "config": config_to_dict(cfg),
            },
            out_dir / LAST,
        )
        (out_dir / "history.json").write_text(json.dumps(history, indent=1))
        for callback in callbacks:
            callback(epoch, metrics)
        if stopped != "epochs":
            break
    return TrainResult(
        out_dir=out_dir,
        best_checkpoint=out_dir / BEST,
        history=history,
        best_epoch=best_epoch,
        best_score=best_score,
        stopped=stopped,
        num_parameters=count_parameters(model),
        train_seconds=seconds,
        train_tokens=tokens_seen,
    )


def validation_scores(
    model: Seq2Seq, data: PreparedData, cfg: ExperimentConfig, device: torch.device
) -> dict[str, float]:
    """Greedy-decoded validation BLEU/chrF (and exact match): cheap enough for every epoch."""
    out = translate(model, data.val, data.src_tok, data.tgt_tok, cfg.eval, device, beam_size=1)
    scores = corpus_scores(out.hypotheses, out.references)
    return {
        "val/bleu": float(scores["bleu"]),
        "val/chrf": float(scores["chrf"]),
        "val/exact_match": exact_match(out.hypotheses, out.references),
    }


def _best_state(
    model: Seq2Seq, cfg: ExperimentConfig, data: PreparedData, epoch: int, metrics: dict
) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "config": config_to_dict(cfg),
        "epoch": epoch,
        "metrics": metrics,
        "src_tokenizer": tokenizer_filename("src", data.src_tok),
        "tgt_tokenizer": tokenizer_filename("tgt", data.tgt_tok),
    }


def _epoch_line(epoch: int, m: dict[str, float]) -> str:
    return (
        f"epoch {epoch:3d}  train/loss {m['train/loss']:.3f}  val/loss {m['val/loss']:.3f}  "
        f"val/bleu {m['val/bleu']:5.2f}  tok/s {m['train/tokens_per_s']:,.0f}  "
        f"{m['train/epoch_seconds']:.0f}s"
    )
