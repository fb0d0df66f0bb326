"""Stopping a running command with SIGTERM (`kill`, a supervisor) leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnbench.tracking import Tracker
from tests._services import prefect_home
from tests.test_sweep import TINY_SWEEP


def _children(pid: int) -> dict[int, str]:
    """Direct children of `pid` -> their command line, read from /proc (Linux)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out[int(entry.name)] = cmdline
    return out


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("parallel", [1, 2])
def test_sigterm_stops_the_flow_its_workers_and_its_prefect_server(tmp_path, shared_data, parallel):
    env = {
        **os.environ,
        "ATTNBENCH_DATA_DIR": str(shared_data),
        "PREFECT_HOME": str(prefect_home(tmp_path / "prefect-home")),
    }
    env.pop("PREFECT_API_URL", None)  # Prefect's ephemeral mode: the server is our child
    sets = [arg for setting in TINY_SWEEP for arg in ("--set", setting)]
    log = tmp_path / "sweep.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "attnbench.cli", "sweep", "--preset", "britz-sweep-cpu",
             *sets, "--workdir", str(tmp_path / "work"), "--reports-dir", str(tmp_path / "r"),
             "--parallel", str(parallel)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    servers: list[int] = []  # Prefect's ephemeral server
    workers: list[int] = []  # the pool's processes, with --parallel 2
    try:

        def flow_is_training() -> bool:
            if proc.poll() is not None:
                tail = log.read_text()[-2000:]
                pytest.fail(f"the sweep ended early ({proc.returncode}):\n{tail}")
            children = _children(proc.pid)
            servers[:] = [pid for pid, cmd in children.items() if "uvicorn" in cmd]
            workers[:] = [pid for pid, cmd in children.items() if "spawn_main" in cmd]
            training = log.read_text().count("training sweep cell") >= parallel
            expected_workers = 0 if parallel == 1 else parallel  # 1: cells run in this process
            return bool(servers) and len(workers) == expected_workers and training

        _wait_for(flow_is_training, 180, "the flow to start training with its Prefect server")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        text = log.read_text()
        assert "attnbench: terminated; rerun the same command to resume" in text
        assert "Traceback" not in text.split("attnbench: terminated")[-1]
        _wait_for(lambda: not any(map(_running, servers + workers)), 30, "its children to stop")
        runs = Tracker.local(tmp_path / "work", "attnbench-britz-sweep-cpu").search_runs("")
        assert "RUNNING" not in set(runs["status"])  # the parent and the cut cell: FAILED
        assert "FAILED" in set(runs["status"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for pid in filter(_running, servers + workers):
            os.kill(pid, signal.SIGKILL)
