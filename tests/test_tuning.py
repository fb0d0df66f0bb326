"""Optuna wiring: storage, equal spaces, failures recorded, resume after a crash, parallel
workers on one study (journal always; PostgreSQL when ATTNBENCH_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from attnbench.config import TuneConfig, load_config
from attnbench.errors import UserError
from attnbench.tuning import (
    apply_settings,
    fail_orphaned_trials,
    make_storage,
    run_study,
    suggest,
)

POSTGRES_URL = os.environ.get("ATTNBENCH_TEST_POSTGRES_URL")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -3, 3)
    return -((x - 1) ** 2)


def test_default_storage_is_a_journal_file_in_the_workdir(tmp_path):
    storage = make_storage(None, tmp_path)
    result = run_study("s", quadratic, TuneConfig(n_trials=3), 1, storage)
    assert (tmp_path / "optuna.journal").is_file()
    assert result.states == {"COMPLETE": 3}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost", "not supported"),
        ("postgresql+psycopg2://nobody@127.0.0.1:1/none", "cannot open Optuna storage"),
        ("postgresql+psycopg2://nobody:s3cret@127.0.0.1:1/none", "nobody:\\*\\*\\*@127"),
        ("redis://nobody:s3cret@localhost", "'redis://...' is not supported"),
    ],
)
def test_bad_storage_urls_are_one_line_without_the_password(tmp_path, url, message):
    with pytest.raises(UserError, match=message) as info:
        make_storage(url, tmp_path)
    assert "\n" not in str(info.value) and "s3cret" not in str(info.value)


def test_every_variant_gets_the_same_space_and_settings_apply_to_the_config():
    cfg = load_config(preset="quick")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    values = suggest(trial, cfg.tune.space)
    assert set(values) == set(cfg.tune.space)
    tuned = apply_settings(cfg, {**values, "model.attention": "dot"})
    assert tuned.train.lr == values["train.lr"] and tuned.model.attention == "dot"
    assert 3e-4 <= tuned.train.lr <= 5e-3
    with pytest.raises(UserError, match="not a config setting"):
        apply_settings(cfg, {"train.learning_rate": 1.0})


def test_failing_trials_are_recorded_and_the_study_goes_on(tmp_path):
    def sometimes_broken(trial: optuna.Trial) -> float:
        if trial.number == 1:
            raise FloatingPointError("training loss became nan")
        if trial.number == 2:
            return math.nan
        return quadratic(trial)

    storage = make_storage(None, tmp_path)
    result = run_study("s", sometimes_broken, TuneConfig(n_trials=5), 1, storage)
    assert result.states == {"COMPLETE": 3, "FAIL": 2}
    study = optuna.load_study(study_name="s", storage=storage)
    completed = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert result.best_value == max(completed)  # maximised (val/bleu); the NaN trial failed


@pytest.mark.slow
def test_median_pruner_stops_hopeless_trials(tmp_path):
    def curve(trial: optuna.Trial) -> float:
        good = trial.number % 2 == 0
        for step in range(1, 6):
            trial.report(step * (10 if good else 1), step)
            if trial.should_prune():
                raise optuna.TrialPruned
        return 50.0 if good else 5.0

    cfg = TuneConfig(n_trials=8, startup_trials=2)
    result = run_study("s", curve, cfg, 5, make_storage(None, tmp_path))
    assert result.states.get("PRUNED", 0) >= 2 and result.best_value == 50.0


def test_orphaned_running_trials_of_dead_processes_are_failed(tmp_path):
    storage = make_storage(None, tmp_path)
    study = optuna.create_study(study_name="s", storage=storage)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = study.ask()
    import socket

    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", dead.pid)
    live = study.ask()
    live.set_user_attr("host", socket.gethostname())
    live.set_user_attr("pid", os.getpid())
    closed = []
    assert fail_orphaned_trials(study, lambda t: closed.append(t.number)) == [trial.number]
    assert closed == [trial.number]  # the caller's handler saw the orphan, and only it
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {trial.number: TrialState.FAIL, live.number: TrialState.RUNNING}


WORKER = textwrap.dedent(
    """
    import os, sys, time
    import optuna
    from pathlib import Path
    from attnbench.config import TuneConfig
    from attnbench.tuning import make_storage, run_study
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, workdir, name = sys.argv[1] or None, Path(sys.argv[2]), sys.argv[3]
    n, delay = int(sys.argv[4]), float(sys.argv[5])
    def objective(trial):
        x = trial.suggest_float("x", -3, 3)
        time.sleep(delay)
        return -(x - 1) ** 2
    run_study(name, objective, TuneConfig(n_trials=n), 1, make_storage(url, workdir))
    """
)


def _worker(url, workdir, name, n, delay):
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, url or "", str(workdir), name, str(n), str(delay)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


STORAGES = ["journal"] + (["postgresql"] if POSTGRES_URL else [])


@pytest.mark.slow
@pytest.mark.parametrize("kind", STORAGES)
def test_two_processes_share_one_study(tmp_path, kind):
    url = POSTGRES_URL if kind == "postgresql" else None
    name = f"parallel-{uuid.uuid4().hex[:8]}"
    workers = [_worker(url, tmp_path, name, 12, 0.2) for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name=name, storage=make_storage(url, tmp_path))
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == len(trials)
    assert 12 <= len(trials) <= 13  # the budget, plus at most one in flight at the end
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both workers contributed
    if kind == "postgresql":
        optuna.delete_study(study_name=name, storage=make_storage(url, tmp_path))


@pytest.mark.slow
def test_killed_study_resumes_keeping_finished_trials(tmp_path):
    name = "interrupted"
    worker = _worker(None, tmp_path, name, 10, 0.5)
    storage = make_storage(None, tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.3)
        try:
            done = optuna.load_study(study_name=name, storage=storage).get_trials(
                states=(TrialState.COMPLETE,)
            )
        except KeyError:
            continue
        if len(done) >= 3:
            break
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    before = {
        t.number: t.params
        for t in optuna.load_study(study_name=name, storage=storage).get_trials(
            states=(TrialState.COMPLETE,)
        )
    }
    assert 3 <= len(before) < 10
    rerun = _worker(None, tmp_path, name, 10, 0.0)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name=name, storage=make_storage(None, tmp_path))
    finished = [t for t in study.get_trials() if t.state != TrialState.RUNNING]
    assert len(finished) == len(study.get_trials()) == 10  # nothing left hanging
    after = {t.number: t.params for t in finished if t.state == TrialState.COMPLETE}
    assert all(after[n] == p for n, p in before.items())  # earlier trials kept as they were


def test_a_resumed_study_does_not_replay_the_same_trials(tmp_path):
    storage = make_storage(None, tmp_path)
    first = run_study("s", quadratic, TuneConfig(n_trials=2, startup_trials=5), 1, storage)
    assert first.states == {"COMPLETE": 2}
    run_study("s", quadratic, TuneConfig(n_trials=4, startup_trials=5), 1, storage)
    study = optuna.load_study(study_name="s", storage=storage)
    xs = [t.params["x"] for t in study.get_trials()]
    assert len(xs) == 4 and len(set(xs)) == 4  # random start-up trials, all different
    seeds = {t.user_attrs["sampler_seed"] for t in study.get_trials()}
    assert len(seeds) == 2 and 0 in seeds  # the fresh study used tune.sampler_seed itself


def test_fresh_studies_are_reproducible_from_the_seed(tmp_path):
    params = []
    for name in ("a", "b"):
        run_study(name, quadratic, TuneConfig(n_trials=3), 1, make_storage(None, tmp_path))
        study = optuna.load_study(study_name=name, storage=make_storage(None, tmp_path))
        params.append([t.params["x"] for t in study.get_trials()])
    assert params[0] == params[1]
