"""Scale-out and reliability drills: the deployed topology with real servers and several
workers, and what happens when processes die at the worst moment.

1. Two process workers on one pool run two `tune/gpu` flow runs that share one Optuna study
   (PostgreSQL when ATTNBENCH_TEST_POSTGRES_URL is set, else a journal file) and log to one
   MLflow server (PostgreSQL- or SQLite-backed).
2. A worker and its flow run are killed with SIGKILL mid-trial; a rerun fails the orphaned
   trial and completes the budget without repeating finished trials.
3. `attnbench train` is killed with SIGKILL mid-epoch; `--resume` ends exactly where an
   uninterrupted run ends.
4. An unreachable MLflow server stops `attnbench run` at once with one line, exit code 2, and
   nothing written; with the server up, the same command completes.

Every process is started here in its own session and stopped here, whatever happens.
The tests that need a Prefect server come last, so that the module's server runs only for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests._services import (
    POSTGRES_URL_ENV,
    REPO,
    Server,
    api_get,
    api_post,
    clean_env,
    cli,
    free_port,
    postgres_database,
    prefect,
    prefect_home,
    running_mlflow_server,
    running_prefect_server,
    start,
    stop,
    tail,
)

EXPERIMENT = "attnbench-quick"  # experiment_name(): attnbench-<config name>
STUDY = "quick/main/dot"  # study_name(): <config name>/<dataset>/<variant>
DEPLOYMENT = "tune/gpu"  # prefect.yaml: flow `tune`, deployment `gpu`, on work pool `gpu`
POOL = "gpu"
TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")

#: a tuning run of seconds on the `quick` preset: one variant, 4 trials of one short epoch
TINY_TUNE = [
    "data.train_limit=300",
    "data.val_limit=30",
    "data.test_limit=30",
    "data.src_vocab_size=300",
    "data.tgt_vocab_size=300",
    "model.hidden_dim=32",
    "model.emb_dim=32",
    "tune.n_trials=4",
    "tune.epochs=1",
    "benchmark.variants=[dot]",
    "benchmark.baseline=dot",  # must be one of the variants (check_benchmark)
    "benchmark.datasets={}",
    "eval.beam_size=1",
]
#: the whole benchmark in well under a minute: one variant, one trial, one seed
TINY_RUN = [
    "data.train_limit=300",
    "data.val_limit=30",
    "data.test_limit=30",
    "data.src_vocab_size=300",
    "data.tgt_vocab_size=300",
    "model.emb_dim=32",
    "model.hidden_dim=32",
    "train.epochs=1",
    "tune.n_trials=1",
    "tune.epochs=1",
    "benchmark.variants=[dot]",
    "benchmark.baseline=dot",
    "benchmark.seeds=[1]",
    "benchmark.datasets={}",
    "benchmark.bench_lengths=[32]",
    "benchmark.bench_cell_seconds=0.05",
    "eval.beam_size=1",
    "eval.bootstrap_samples=100",
]


def sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def run_to_end(
    cmd: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a command in its own session; whatever it leaves behind (an ephemeral Prefect
    server) is stopped with it, and a timeout stops the whole group."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd[:4])} ran past {timeout} s:\n{err[-4000:]}")
    finally:
        stop(proc, grace_s=10)  # the group: anything the command left running
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def kill_process_group_of(pid: int) -> None:
    """SIGKILL the process group that `pid` leads or belongs to (never the test's own)."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        if pgid == os.getpgrp():
            os.kill(pid, signal.SIGKILL)
        else:
            os.killpg(pgid, signal.SIGKILL)


def process_gone(pid: int) -> bool:
    """True once `pid` no longer runs (gone, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


# Prefect: the deployments, flow runs and their processes ------------------------------------
@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Iterator[Server]:
    """A Prefect server with the work pools of prefect.yaml and its deployments
    (`prefect deploy --all --no-prompt`); each test starts its own workers."""
    with running_prefect_server(tmp_path_factory.mktemp("prefect")) as server:
        for pool in ("cpu", "gpu"):
            cli(server, "work-pool", "create", pool, "--type", "process")
        # ATTNBENCH_HOME at deploy time is written into the pull step; the workers lack it.
        out = cli(server, "deploy", "--all", "--no-prompt", ATTNBENCH_HOME=str(REPO))
        assert DEPLOYMENT in out, out
        deployment = api_get(f"{server.url}/deployments/name/{DEPLOYMENT}")
        assert deployment["work_pool_name"] == POOL
        yield server


def delete_pending_flow_runs(server: Server) -> None:
    """Flow runs an earlier (failed) drill left scheduled must not reach this test's workers."""
    body = {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED", "PENDING"]}}}}
    for run in api_post(f"{server.url}/flow_runs/filter", body):
        request = urllib.request.Request(f"{server.url}/flow_runs/{run['id']}", method="DELETE")
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=10):
            pass


def start_worker(server: Server, name: str, env: dict[str, str], root: Path) -> subprocess.Popen:
    """A process worker on pool gpu taking one flow run at a time (docs/scale-out.md step 6)."""
    cmd = prefect("worker", "start", "--pool", POOL, "--type", "process", "--name", name,
                  "--limit", "1")  # fmt: skip
    return start(cmd, env, root / f"{name}.log", root)


def wait_for_workers(
    server: Server, workers: dict[str, subprocess.Popen], root: Path, timeout_s: float = 90
) -> None:
    """Until every worker has registered with the pool (it polls right after)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = {w["name"] for w in api_post(f"{server.url}/work_pools/{POOL}/workers/filter", {})}
        if set(workers) <= found:
            return
        for name, proc in workers.items():
            if proc.poll() is not None:
                pytest.fail(f"worker {name} exited:\n{tail(root / f'{name}.log')}")
        if time.monotonic() > deadline:
            pytest.fail(f"workers {set(workers) - found} did not register in {timeout_s:.0f} s")
        time.sleep(0.5)


def trigger(server: Server, **parameters: Any) -> str:
    """One flow run of tune/gpu (what `prefect deployment run` does), parameters merged over the
    deployment's; returns its id."""
    deployment = api_get(f"{server.url}/deployments/name/{DEPLOYMENT}")
    flow_run = api_post(
        f"{server.url}/deployments/{deployment['id']}/create_flow_run", {"parameters": parameters}
    )
    return flow_run["id"]


def wait_for_flow_runs(
    server: Server,
    run_ids: list[str],
    workers: dict[str, subprocess.Popen],
    root: Path,
    timeout_s: float,
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        runs = {rid: api_get(f"{server.url}/flow_runs/{rid}") for rid in run_ids}
        if all(r["state_type"] in TERMINAL for r in runs.values()):
            return runs
        for name, proc in workers.items():
            if proc.poll() is not None:
                pytest.fail(f"worker {name} exited:\n{tail(root / f'{name}.log')}")
        if time.monotonic() > deadline:
            states = {rid: r["state_type"] for rid, r in runs.items()}
            logs = "\n".join(tail(root / f"{name}.log", 3000) for name in workers)
            pytest.fail(f"flow runs not finished in {timeout_s:.0f} s: {states}\n{logs}")
        time.sleep(1)


def runs_submitted_by(worker_log: str) -> set[str]:
    """The flow runs a worker started, from its log: those it began submitting less those whose
    submission the server aborted (another worker had already claimed them)."""
    submitted = set(re.findall(r"submitting flow run '([0-9a-f-]{36})'", worker_log))
    aborted = set(re.findall(r"Aborted submission of flow run '([0-9a-f-]{36})'", worker_log))
    return submitted - aborted


def kill_flow_run_processes(server: Server, run_ids: list[str]) -> None:
    """Prefect 3.9 starts each flow run in a session of its own (isolate_process_group), so
    stopping a worker's process group leaves its running flow runs alive: end those too."""
    for rid in run_ids:
        with contextlib.suppress(OSError, ValueError):
            run = api_get(f"{server.url}/flow_runs/{rid}")
            pid = int(run.get("infrastructure_pid") or 0)
            if not pid or run["state_type"] in TERMINAL or process_gone(pid):
                continue
            if "prefect" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                kill_process_group_of(pid)


# Stores: PostgreSQL when the CI provides one, else SQLite (MLflow) and a journal (Optuna) ----
@dataclass
class Stores:
    mlflow: str  # --backend-store-uri of the MLflow server
    optuna: str  # tune.storage
    postgres: bool


@pytest.fixture
def stores(tmp_path) -> Iterator[Stores]:
    """Fresh databases for this test on $ATTNBENCH_TEST_POSTGRES_URL's server, dropped after.

    MLflow and Optuna get a database each: both keep their schema version in a table named
    `alembic_version`, so one database cannot hold both."""
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        yield Stores(
            f"sqlite:///{tmp_path / 'mlflow.db'}", f"journal:{tmp_path / 'optuna.journal'}", False
        )
        return
    with postgres_database(base, "mlflow") as mlflow_url, postgres_database(base, "optuna") as url:
        yield Stores(mlflow_url, url, True)


def read_trials(storage_url: str, study: str, missing_ok: bool = False) -> list | None:
    """The study's trials, read without creating anything (no tables, no journal file);
    with `missing_ok`, None while the study (or its storage) does not exist yet."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    storage = None
    try:
        if storage_url.startswith("journal:"):
            path = Path(storage_url.removeprefix("journal:"))
            if missing_ok and not path.exists():
                return None
            storage = JournalStorage(JournalFileBackend(str(path)))
        else:  # PostgreSQL: the first tuning process creates the tables
            storage = RDBStorage(
                storage_url, skip_table_creation=True, skip_compatibility_check=True
            )
        names = optuna.get_all_study_names(storage)
        if missing_ok and study not in names:
            return None
        assert names == [study], names
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=True)
    except Exception:
        if missing_ok:
            return None
        raise
    finally:
        if isinstance(storage, RDBStorage):
            storage.engine.dispose()


def data_env(tmp_path: Path, shared_data: Path) -> dict[str, str]:
    return {"ATTNBENCH_DATA_DIR": str(shared_data), "ATTNBENCH_CACHE_DIR": str(tmp_path / "cache")}


# 3. training killed mid-epoch ----------------------------------------------------------------
EPOCHS = 6


def slow_synthetic_config(path: Path) -> Path:
    """tests/conftest.py::tiny_synthetic_config with epochs of ~1.5 s. One thread, so
    the reference and the interrupted run compute bit for bit alike while running side by
    side on two cores."""
    import yaml

    synthetic = {"task": "reverse", "n_train": 3000, "n_val": 40, "n_test": 40,
                 "min_len": 6, "max_len": 14, "vocab_size": 12}  # fmt: skip
    train = {"epochs": EPOCHS, "batch_size": 32, "batch_tokens": None, "lr": 0.01,
             "patience": 10, "num_threads": 1}  # fmt: skip
    tree = {
        "name": "drill",
        "data": {"dataset": "synthetic", "tokenizer": "word", "synthetic": synthetic},
        "model": {"emb_dim": 32, "hidden_dim": 128, "dropout": 0.1},  # ~1.5 s per epoch
        "train": train,
        "eval": {"beam_size": 2, "batch_size": 64},
    }
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def read_history(run: Path) -> list[dict[str, float]]:
    try:
        return json.loads((run / "history.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_training_killed_mid_epoch_resumes_to_the_same_result(tmp_path, shared_data):
    config = slow_synthetic_config(tmp_path / "drill.yaml")
    env = clean_env(**data_env(tmp_path, shared_data), OMP_NUM_THREADS="1")
    reference, killed = tmp_path / "reference", tmp_path / "killed"

    def train_cmd(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "attnbench.cli", "train", "--config", str(config),
                "--out", str(out), "--quiet", *extra]  # fmt: skip

    uninterrupted = start(train_cmd(reference), env, tmp_path / "reference.log", tmp_path)
    victim = start(train_cmd(killed), env, tmp_path / "killed.log", tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (history := read_history(killed)):  # last.pt is written before history.json
            if victim.poll() is not None:
                pytest.fail(f"training exited early:\n{tail(tmp_path / 'killed.log')}")
            if time.monotonic() > deadline:
                pytest.fail(f"no epoch finished in 120 s:\n{tail(tmp_path / 'killed.log')}")
            time.sleep(0.1)
        # half-way through the next epoch
        time.sleep(0.5 * history[-1]["train/epoch_seconds"])
        os.killpg(victim.pid, signal.SIGKILL)
        assert victim.wait(timeout=10) == -signal.SIGKILL
        done_epochs = len(read_history(killed))
        assert done_epochs == len(history), "an epoch ended meanwhile: make epochs slower"
        assert done_epochs < EPOCHS

        from attnbench.checkpoint import load_checkpoint

        assert load_checkpoint(killed / "last.pt")["epoch"] == done_epochs
        assert not (killed / "results.json").exists()

        resumed = run_to_end(train_cmd(killed, "--resume"), env, tmp_path, timeout=150)
        assert resumed.returncode == 0, resumed.stderr[-4000:]
        # it continued from the checkpoint rather than starting over
        assert f"epoch {done_epochs + 1:3d}" in resumed.stderr
        assert f"epoch {done_epochs:3d}" not in resumed.stderr
        assert uninterrupted.wait(timeout=150) == 0, tail(tmp_path / "reference.log")
    finally:
        stop(victim)
        stop(uninterrupted)

    keys = ("epoch", "train/loss", "val/loss", "val/bleu", "val/chrf", "val/exact_match", "lr")
    expected = [{k: e[k] for k in keys} for e in read_history(reference)]
    assert len(expected) == EPOCHS
    assert [{k: e[k] for k in keys} for e in read_history(killed)] == expected
    ref = json.loads((reference / "results.json").read_text())
    got = json.loads((killed / "results.json").read_text())
    assert got["test"] and got["test"] == ref["test"]
    for key in ("best_epoch", "parameters", "stopped"):
        assert got[key] == ref[key], key


# 4. MLflow server unreachable at start --------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_unreachable_mlflow_server_fails_fast_and_writes_nothing(tmp_path, shared_data):
    port = free_port()  # nothing listens here until the server starts below
    uri = f"http://127.0.0.1:{port}"
    workdir, reports = tmp_path / "work", tmp_path / "reports"
    env = clean_env(
        **data_env(tmp_path, shared_data),
        MLFLOW_TRACKING_URI=uri,
        # ephemeral Prefect, nothing in ~/.prefect
        PREFECT_HOME=str(prefect_home(tmp_path / "prefect-home")),
    )
    cmd = [sys.executable, "-m", "attnbench.cli", "run", "--preset", "quick", *sets(TINY_RUN),
           "--workdir", str(workdir), "--reports-dir", str(reports)]  # fmt: skip

    tic = time.monotonic()
    done = run_to_end(cmd, env, tmp_path, timeout=120)
    seconds = time.monotonic() - tic
    assert done.returncode == 2, done.stderr[-4000:]
    # the check's 10 s window plus the command's start-up (~3 s here, twice that while the
    # host ran at half speed); MLflow's own HTTP retries would take minutes
    assert seconds < 25, f"took {seconds:.1f} s to report an unreachable server"
    errors = [line for line in done.stderr.splitlines() if line.startswith("attnbench: error:")]
    assert len(errors) == 1, done.stderr[-4000:]
    assert "unreachable" in errors[0] and uri in errors[0]
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-4000:]
    # nothing half-way: no run directories, Optuna journal, local MLflow store or report
    for path in ("runs", "optuna.journal", "mlflow.db", "mlartifacts"):
        assert not (workdir / path).exists(), path
    assert not reports.exists()

    backend = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with running_mlflow_server(backend, tmp_path / "mlartifacts", port, tmp_path / "mlflow.log"):
        done = run_to_end(cmd, env, tmp_path, timeout=240)
        assert done.returncode == 0, done.stderr[-4000:]
        # each training log line once, in Prefect's format (the CLI's own copy is off)
        lines = done.stderr.splitlines()
        assert any(" | INFO    | attnbench.train - epoch   1 " in line for line in lines)
        assert not [line for line in lines if line.startswith("epoch ")], done.stderr[-4000:]
        from attnbench.tracking import Tracker

        runs = Tracker(uri, EXPERIMENT).search_runs()
    parents = runs[runs["tags.kind"] == "pipeline"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    assert f"MLflow parent run: {parents.iloc[0]['run_id']}" in done.stdout
    assert not (workdir / "mlflow.db").exists()  # everything went to the server


# 1. the same topology, for real ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_workers_share_one_study_and_one_mlflow_server(deployed, stores, tmp_path, shared_data):
    server = deployed
    delete_pending_flow_runs(server)
    port = free_port()
    n_trials = 4
    with running_mlflow_server(
        stores.mlflow, tmp_path / "mlartifacts", port, tmp_path / "mlflow.log"
    ) as mlflow_url:
        worker_env = {
            **server.env,
            **data_env(tmp_path, shared_data),
            "MLFLOW_TRACKING_URI": mlflow_url,
            "PREFECT_WORKER_QUERY_SECONDS": "2",
        }
        workers: dict[str, subprocess.Popen] = {}
        run_ids: list[str] = []
        try:
            for name in ("drill-a", "drill-b"):
                workers[name] = start_worker(server, name, worker_env, tmp_path)
            wait_for_workers(server, workers, tmp_path)
            params = {
                "preset": "quick",
                "overrides": [*TINY_TUNE, f"tune.storage={stores.optuna}"],
                "workdir": str(tmp_path / "work"),
            }
            run_ids = [trigger(server, **params), trigger(server, **params)]
            flow_runs = wait_for_flow_runs(server, run_ids, workers, tmp_path, timeout_s=220)
        finally:
            for proc in workers.values():
                stop(proc)
            kill_flow_run_processes(server, run_ids)
        logs = {name: (tmp_path / f"{name}.log").read_text(errors="replace") for name in workers}
        for rid, run in flow_runs.items():
            assert run["state_type"] == "COMPLETED", (rid, "\n".join(logs.values())[-8000:])

        # each worker ran one of the two flow runs (both may poll the same scheduled run; the
        # server lets one move it to PENDING and the other logs that it aborted its submission)
        ran = {name: runs_submitted_by(text) for name, text in logs.items()}
        assert sorted(map(len, ran.values())) == [1, 1], ran
        assert ran["drill-a"] != ran["drill-b"]
        assert all(run["work_pool_name"] == POOL for run in flow_runs.values())

        # one study holds every trial of both processes, each number once
        trials = read_trials(stores.optuna, STUDY)
        numbers = sorted(t.number for t in trials)
        assert numbers == list(range(len(trials)))
        # MaxTrialsCallback is checked after each trial: two processes that finish a trial at
        # the same moment may both start one more, so the budget can overshoot by one per
        # extra worker
        assert n_trials <= len(trials) <= n_trials + 1, [t.state for t in trials]
        assert all(t.state.is_finished() for t in trials)
        pids = {t.user_attrs["pid"] for t in trials}
        assert len(pids) == 2, "both flow runs should have run trials"
        assert {str(p) for p in pids} == {r["infrastructure_pid"] for r in flow_runs.values()}

        # MLflow holds one trial run per Optuna trial, tagged with its study and flow run
        from attnbench.tracking import Tracker

        runs = Tracker(mlflow_url, EXPERIMENT).search_runs("tags.kind = 'trial'")
    assert sorted(runs["tags.trial"].astype(int)) == numbers
    assert set(runs["tags.study"]) == {STUDY}
    assert set(runs["run_id"]) == {t.user_attrs["mlflow_run_id"] for t in trials}
    assert set(runs["tags.prefect_flow_run_id"]) == set(run_ids)


def test_a_worker_that_lost_the_race_for_a_run_does_not_count_as_running_it():
    """The CI failure this guards against: worker b's log named worker a's run because b polled
    it too and was refused; the drill then counted it as b's."""
    ours, theirs = "d1bd0383-2905-48be-a489-ed317a7a090d", "4cd8fbc4-fd02-472c-b266-3c293d2154e9"
    log = (
        f"INFO | Worker 'drill-b' submitting flow run '{theirs}'\n"
        f"INFO | Aborted submission of flow run '{theirs}'. Server sent an abort signal: ...\n"
        f"INFO | Worker 'drill-b' submitting flow run '{ours}'\n"
        f"INFO | Flow run 'organic-marmoset' - View at http://127.0.0.1:1/runs/flow-run/{ours}\n"
    )
    assert runs_submitted_by(log) == {ours}


# 2. a worker killed mid-trial -----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_killed_mid_trial_fails_that_trial_and_the_rerun_completes(
    deployed, stores, tmp_path, shared_data
):
    """attnbench's behaviour: a trial whose process died is marked FAIL (user attr
    fail_reason = "process died", by `attnbench.tuning.fail_orphaned_trials` when the study is
    next opened) and is NOT retried: it counts toward tune.n_trials, the rerun runs only the
    rest of the budget, and the trials finished before the kill are kept as they were."""
    server = deployed
    delete_pending_flow_runs(server)
    n_trials = 3
    overrides = [
        *[o for o in TINY_TUNE if not o.startswith(("tune.n_trials", "tune.epochs"))],
        f"tune.n_trials={n_trials}",
        "tune.epochs=2",  # trials of several seconds: time to catch one RUNNING
        "tune.pruner=none",  # every trial that is not killed completes
        "tune.wait_minutes=0.5",  # a trial left RUNNING would fail the rerun, not hang it
        f"tune.storage={stores.optuna}",
    ]
    workdir = tmp_path / "work"
    worker_env = {**server.env, **data_env(tmp_path, shared_data)}  # MLflow: SQLite in workdir
    workers = {"drill-kill": start_worker(server, "drill-kill", worker_env, tmp_path)}
    worker = workers["drill-kill"]
    run_id = ""
    try:
        wait_for_workers(server, workers, tmp_path)
        run_id = trigger(server, preset="quick", overrides=overrides, workdir=str(workdir))
        deadline = time.monotonic() + 150
        while True:
            trials = read_trials(stores.optuna, STUDY, missing_ok=True) or []
            complete = [t for t in trials if t.state.name == "COMPLETE"]
            # its MLflow run started (the pid is recorded before, the run id after)
            running = [
                t for t in trials
                if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs
            ]  # fmt: skip
            if complete and running:
                break
            state = api_get(f"{server.url}/flow_runs/{run_id}")["state_type"]
            if state in TERMINAL or worker.poll() is not None:
                log = tail(tmp_path / "drill-kill.log")
                pytest.fail(f"flow run {state} before the kill:\n{log}")
            if time.monotonic() > deadline:
                pytest.fail(f"no trial running after one completed:\n{trials}")
            time.sleep(0.3)
        # the machine dies: the worker's process group and the flow run's (its own session)
        victim = running[0]
        pid = int(victim.user_attrs["pid"])
        assert api_get(f"{server.url}/flow_runs/{run_id}")["infrastructure_pid"] == str(pid)
        os.killpg(worker.pid, signal.SIGKILL)
        kill_process_group_of(pid)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not process_gone(pid):
            assert time.monotonic() < deadline, f"flow-run process {pid} survived SIGKILL"
            time.sleep(0.1)
    finally:
        stop(worker)
        kill_flow_run_processes(server, [run_id] if run_id else [])

    at_kill = read_trials(stores.optuna, STUDY)
    assert [t.number for t in at_kill if t.state.name == "RUNNING"] == [victim.number]
    before = {t.number: t for t in at_kill if t.state.name == "COMPLETE"}

    # the rerun, without a Prefect server (ephemeral mode) and in the same workdir
    cmd = [sys.executable, "-m", "flows.tune", "--preset", "quick", *sets(overrides),
           "--workdir", str(workdir)]  # fmt: skip
    home = prefect_home(tmp_path / "ephemeral")
    env = clean_env(**data_env(tmp_path, shared_data), PREFECT_HOME=str(home))
    rerun = run_to_end(cmd, env, tmp_path, timeout=180)
    assert rerun.returncode == 0, rerun.stderr[-4000:]

    trials = {t.number: t for t in read_trials(stores.optuna, STUDY)}
    assert sorted(trials) == list(range(n_trials))  # the budget, exactly
    killed = trials[victim.number]
    assert killed.state.name == "FAIL"
    assert killed.user_attrs["fail_reason"] == "process died"
    # as it was when the process died (the snapshot taken while polling may predate its
    # parameters: the pid is recorded before the sampler suggests)
    assert killed.params == next(t for t in at_kill if t.number == victim.number).params
    for number, old in before.items():  # kept, not repeated
        assert trials[number].state.name == "COMPLETE"
        assert trials[number].params == old.params and trials[number].value == old.value
    new = [t for n, t in trials.items() if n not in before and n != victim.number]
    assert new and all(t.number > victim.number for t in new)
    assert all(t.state.name == "COMPLETE" and t.user_attrs["pid"] != pid for t in new)

    # every trial, the killed one included, has its MLflow run in the workdir's store
    from attnbench.tracking import Tracker, default_tracking_uri

    runs = Tracker(default_tracking_uri(workdir), EXPERIMENT).search_runs("tags.kind = 'trial'")
    assert sorted(runs["tags.trial"].astype(int)) == list(range(n_trials))
    # the killed trial's run, left RUNNING by the dead process, was closed by the rerun
    status = dict(zip(runs["tags.trial"].astype(int), runs["status"], strict=True))
    assert status == {n: "FAILED" if n == victim.number else "FINISHED" for n in trials}
    killed_run = runs[runs["run_id"] == killed.user_attrs["mlflow_run_id"]].iloc[0]
    assert killed_run["tags.trial_state"] == "FAIL"
    assert "process died" in killed_run["tags.error"]
