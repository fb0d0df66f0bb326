"""Scale-out for real: a Prefect server, work pools, a process worker, the deployments of
prefect.yaml (`prefect deploy`), one tiny benchmark run triggered from the CLI, and what the
run left in MLflow. Every process is started here and stopped here, whatever happens."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TINY = [
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
    "benchmark.variants=[additive, dot]",
    "benchmark.seeds=[1]",
    "benchmark.datasets={}",
    "benchmark.bench_lengths=[32]",
    "eval.beam_size=1",
    "eval.bootstrap_samples=100",
]
RUN_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prefect(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def api_get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """A background process in its own session, so it and its children stop together."""
    out = log.open("wb")
    try:
        return subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        out.close()


def stop(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGINT to the process group (Prefect stops cleanly on it), SIGKILL after `grace_s`.

    The group also holds what the process started (a worker's flow-run processes)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@dataclass
class Server:
    url: str  # PREFECT_API_URL
    env: dict[str, str]  # environment for every Prefect CLI call and the worker
    logs: Path


@pytest.fixture
def prefect_server(tmp_path) -> Iterator[Server]:
    """`prefect server start` on a free local port with a throwaway PREFECT_HOME."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    home = tmp_path / "prefect-home"
    home.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MLFLOW_", "ATTNBENCH_"))
    }
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="2",
        DO_NOT_TRACK="true",
        MLFLOW_DISABLE_TELEMETRY="true",
        COLUMNS="200",  # rich would wrap the CLI's output at 80 columns
    )
    server = start(
        prefect("server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"),
        env,
        logs / "server.log",
        tmp_path,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if api_get(f"{url}/health") is True:
                    break
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if server.poll() is not None:
                pytest.fail(f"prefect server exited:\n{tail(logs / 'server.log')}")
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server not healthy in 90 s:\n{tail(logs / 'server.log')}")
            time.sleep(0.5)
        yield Server(url, env, logs)
    finally:
        stop(server)


def cli(server: Server, *args: str, timeout: float = 120, **env: str) -> str:
    done = subprocess.run(
        prefect(*args),
        env={**server.env, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{output[-4000:]}"
    return output


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_deployed_benchmark_runs_on_a_process_worker(prefect_server, tmp_path, shared_data):
    server = prefect_server
    for pool in ("cpu", "gpu"):  # prefect.yaml deploys to both
        cli(server, "work-pool", "create", pool, "--type", "process")

    worker_env = {
        **server.env,
        "ATTNBENCH_DATA_DIR": str(shared_data),
        "ATTNBENCH_CACHE_DIR": str(tmp_path / "cache"),
    }
    worker_log = server.logs / "worker.log"
    worker = start(
        prefect("worker", "start", "--pool", "cpu", "--type", "process", "--name", "test-cpu"),
        worker_env,
        worker_log,
        tmp_path,
    )
    try:
        # ATTNBENCH_HOME at deploy time is written into the pull step; the worker lacks it.
        out = cli(server, "deploy", "--all", "--no-prompt", ATTNBENCH_HOME=str(REPO))
        assert "benchmark/quick" in out and "benchmark/multi30k" in out and "tune/gpu" in out
        deployment = api_get(f"{server.url}/deployments/name/benchmark/quick")
        assert deployment["work_pool_name"] == "cpu"
        assert deployment["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        ]

        workdir, reports = tmp_path / "work", tmp_path / "reports"
        out = cli(
            server,
            "deployment", "run", "benchmark/quick",
            "--param", f"overrides={json.dumps(TINY)}",
            "--param", f"workdir={json.dumps(str(workdir))}",
            "--param", f"reports_dir={json.dumps(str(reports))}",
        )  # fmt: skip
        found = re.search(r"UUID: ([0-9a-f-]{36})", out)
        assert found, out
        run_id = found.group(1)

        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            flow_run = api_get(f"{server.url}/flow_runs/{run_id}")
            if flow_run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            if worker.poll() is not None:
                pytest.fail(f"the worker exited:\n{tail(worker_log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"flow run still {flow_run['state_type']}:\n{tail(worker_log)}")
            time.sleep(2)
        assert flow_run["state_type"] == "COMPLETED", tail(worker_log, 8000)
    finally:
        stop(worker)

    # executed by the worker of pool cpu (which also ran the pull step into the checkout)
    assert flow_run["work_pool_name"] == "cpu"
    assert flow_run["deployment_id"] == deployment["id"]
    assert flow_run["infrastructure_pid"]
    assert run_id in worker_log.read_text(errors="replace")
    assert list(reports.rglob("summary.md")), "the report step wrote nothing"

    # what MLflow holds: the parent run of this flow run, a trial and a final run per variant
    from attnbench.tracking import PARENT_TAG, Tracker, default_tracking_uri

    runs = Tracker(default_tracking_uri(workdir), "attnbench-quick").search_runs()
    parents = runs[runs["tags.kind"] == "pipeline"]
    assert len(parents) == 1
    parent = parents.iloc[0]
    assert parent["status"] == "FINISHED"
    assert parent["tags.prefect_flow_run_id"] == run_id
    children = runs[runs[f"tags.{PARENT_TAG}"] == parent["run_id"]]
    trials = children[children["tags.kind"] == "trial"]
    finals = children[children["tags.kind"] == "final"]
    assert sorted(trials["tags.attention"]) == ["additive", "dot"]
    assert sorted(finals["tags.attention"]) == ["additive", "dot"]
    assert (trials["tags.trial_state"] == "COMPLETE").all()
    assert (finals["status"] == "FINISHED").all()
    assert (finals["metrics.test/test_2016_flickr/bleu"] >= 0).all()
    assert finals["tags.test/test_2016_flickr/bleu_signature"].str.contains("nrefs:1").all()
