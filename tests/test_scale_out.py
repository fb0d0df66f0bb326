"""Scale-out for real: a Prefect server, work pools, a process worker, the deployments of
prefect.yaml (`prefect deploy`), one tiny benchmark run triggered from the CLI, and what the
run left in MLflow. Every process is started here and stopped here, whatever happens."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from tests._rescore import assert_scores_match_logged_hypotheses
from tests._services import (
    REPO,
    Server,
    api_get,
    cli,
    prefect,
    running_prefect_server,
    start,
    stop,
    tail,
)

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
    "benchmark.bench_cell_seconds=0.05",
    "eval.beam_size=1",
    "eval.bootstrap_samples=100",
]
RUN_TIMEOUT_S = 240


@pytest.fixture
def prefect_server(tmp_path) -> Iterator[Server]:
    """`prefect server start` on a free local port with a throwaway PREFECT_HOME."""
    with running_prefect_server(tmp_path) as server:
        yield server


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
        sweep = api_get(f"{server.url}/deployments/name/sweep/britz")
        assert sweep["work_pool_name"] == "gpu" and sweep["parameters"]["parallel"] == 4
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
    tracker = Tracker(default_tracking_uri(workdir), "attnbench-quick")
    with pytest.MonkeyPatch.context() as patch:  # the references come from the shared data
        patch.setenv("ATTNBENCH_DATA_DIR", str(shared_data))
        assert_scores_match_logged_hypotheses(tracker, finals, TINY, "test_2016_flickr", 30)
    assert finals["tags.test/test_2016_flickr/bleu_signature"].str.contains("nrefs:1").all()
