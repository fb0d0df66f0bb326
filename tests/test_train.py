"""The training loop: learning, exact resume, divergence, safety of existing runs."""

from __future__ import annotations

import json

import pytest
import torch

from attnbench import train as train_mod
from attnbench.checkpoint import load_checkpoint
from attnbench.errors import UserError
from attnbench.train import BEST, LAST, TrainingDiverged, train
from attnbench.trained import evaluate_split, load_trained
from tests.conftest import tiny_synthetic_config


def test_training_learns_and_writes_a_complete_run(tmp_path):
    cfg = tiny_synthetic_config(train={"epochs": 6})
    result = train(cfg, tmp_path / "run", progress=False)
    losses = [m["train/loss"] for m in result.history]
    assert losses[-1] < losses[0] * 0.7
    assert {"train/loss", "val/loss", "val/bleu", "val/chrf", "lr"} <= set(result.history[0])
    for name in (BEST, LAST, "config.yaml", "src.json", "tgt.json", "history.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert result.train_tokens > 0 and result.tokens_per_second > 0
    trained = load_trained(result.best_checkpoint)
    res = evaluate_split(trained, "test")
    assert res.scores["sentences"] == 40
    assert 0 <= res.scores["bleu"] <= 100 and "nrefs:1" in res.scores["bleu_signature"]
    assert res.scores["bleu"] > 5  # it learned something real on reversal
    # the optimizer state it saved (and resumes from) is the fused Adam's, as benchmarked
    assert load_checkpoint(tmp_path / "run" / LAST)["optimizer"]["param_groups"][0]["fused"]


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_identical_results(tmp_path, monkeypatch):
    cfg = tiny_synthetic_config(train={"epochs": 4})
    full = train(cfg, tmp_path / "full", progress=False)

    real_step = torch.optim.Adam.step
    calls = {"n": 0}

    def failing_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 25:  # mid-epoch 3 (10 batches per epoch)
            raise _Interrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", failing_step)
    with pytest.raises(_Interrupt):
        train(cfg, tmp_path / "cut", progress=False)
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    assert load_checkpoint(tmp_path / "cut" / LAST)["epoch"] == 2
    resumed = train(cfg, tmp_path / "cut", resume=True, progress=False)

    assert len(resumed.history) == 4
    for a, b in zip(full.history, resumed.history, strict=True):
        for key in ("train/loss", "val/loss", "val/bleu"):
            assert a[key] == b[key], key
    w_full = load_checkpoint(tmp_path / "full" / LAST)["model"]
    w_cut = load_checkpoint(tmp_path / "cut" / LAST)["model"]
    assert all(torch.equal(w_full[k], w_cut[k]) for k in w_full)


def test_existing_run_is_never_overwritten_without_resume(tmp_path):
    cfg = tiny_synthetic_config(train={"epochs": 1})
    train(cfg, tmp_path / "run", progress=False)
    before = (tmp_path / "run" / LAST).read_bytes()
    with pytest.raises(UserError, match="--resume"):
        train(cfg, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / LAST).read_bytes() == before


def test_resume_refuses_a_different_model(tmp_path):
    train(tiny_synthetic_config(train={"epochs": 1}), tmp_path / "run", progress=False)
    other = tiny_synthetic_config(train={"epochs": 2}, model={"hidden_dim": 16})
    with pytest.raises(UserError, match="'model' settings differ"):
        train(other, tmp_path / "run", resume=True, progress=False)


def test_resume_of_a_finished_run_adds_epochs(tmp_path):
    train(tiny_synthetic_config(train={"epochs": 1}), tmp_path / "run", progress=False)
    more = train(tiny_synthetic_config(train={"epochs": 2}), tmp_path / "run", resume=True)
    assert [m["epoch"] for m in more.history] == [1.0, 2.0]
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 2


def test_nan_loss_stops_with_a_clear_error(tmp_path, monkeypatch):
    real = train_mod._loss_sum

    def nan_loss(model, batch, smoothing):
        return real(model, batch, smoothing) * float("nan")

    monkeypatch.setattr(train_mod, "_loss_sum", nan_loss)
    with pytest.raises(
        TrainingDiverged, match=r"loss became nan at epoch 1, step 0; lower train.lr"
    ):
        train(tiny_synthetic_config(), tmp_path / "run", progress=False)


def test_early_stopping_on_patience(tmp_path):
    cfg = tiny_synthetic_config(train={"epochs": 30, "patience": 1, "lr": 1e-7})
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.stopped.startswith("early stop") and len(result.history) < 30


def test_epoch_callbacks_see_metrics_and_can_stop_training(tmp_path):
    seen = []

    def callback(epoch, metrics):
        seen.append((epoch, metrics["val/bleu"]))
        if epoch == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(tiny_synthetic_config(), tmp_path / "run", callbacks=[callback], progress=False)
    assert [e for e, _ in seen] == [1, 2]
