"""The real command on real data: train on a Multi30k slice, then evaluate the checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_train_then_evaluate_on_multi30k(tmp_path, shared_data):
    env = {**os.environ, "ATTNBENCH_DATA_DIR": str(shared_data)}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "attnbench.cli", "train", "--preset", "quick", "--quiet",
           "--attention", "dot", "--out", str(run),
           "--set", "data.train_limit=1500", "--set", "data.val_limit=100",
           "--set", "data.test_limit=100", "--set", "train.epochs=2"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "epoch   2" in done.stderr and "test_2016_flickr" in done.stdout
    results = json.loads((run / "results.json").read_text())
    assert results["attention"] == "dot"
    assert results["test"]["test_2016_flickr"]["sentences"] == 100

    hyps = tmp_path / "hyps.txt"
    cmd = [sys.executable, "-m", "attnbench.cli", "evaluate", "--checkpoint", str(run / "best.pt"),
           "--split", "test_2016_flickr", "--beam", "1", "--hypotheses", str(hyps)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "BLEU" in done.stdout and "nrefs:1" in done.stdout
    assert "decode multi30k/test_2016_flickr" in done.stderr  # the progress bar
    assert len(hyps.read_text(encoding="utf-8").splitlines()) == 100

    quiet = subprocess.run([*cmd[:-2], "--quiet"], env=env, capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stdout == done.stdout  # the same scores, deterministic decoding
    assert "decode" not in quiet.stderr
