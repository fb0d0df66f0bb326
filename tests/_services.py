"""Real services for the slow end-to-end tests: a Prefect server, an MLflow server, a throwaway
PostgreSQL database, and background processes (workers) that always stop, whatever happens.

Every process starts in its own session (`start_new_session=True`) so that it and everything
it starts stop together: SIGINT to the group first (Prefect and MLflow stop cleanly on it),
SIGKILL after a grace period.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from attnbench.settings import TELEMETRY_OFF

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Prefect, MLflow or attnbench setting (so nothing
    leaks in from the developer's shell), telemetry off, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MLFLOW_", "ATTNBENCH_"))
    }
    env.update(TELEMETRY_OFF)
    env["COLUMNS"] = "200"  # rich would wrap the CLIs' output at 80 columns
    env.update(extra)
    return env


def prefect(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _request(request: urllib.request.Request | str, timeout: float) -> bytes:
    """One HTTP call; a 503 (Prefect's answer while its SQLite database is locked by a
    concurrent write) is retried a few times, as Prefect's own client does."""
    for attempt in range(6):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == 5:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def http_get(url: str, timeout: float = 10) -> bytes:
    return _request(url, timeout)


def api_get(url: str) -> object:
    return json.loads(http_get(url))


def api_post(url: str, body: object) -> object:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    return json.loads(_request(request, 30) or b"null")


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

    The group also holds what the process started, except children started in sessions of
    their own: Prefect 3.9's process worker starts each flow run that way (see
    tests/test_drills.py::kill_flow_run_processes)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def wait_until_healthy(
    url: str, expected: bytes, proc: subprocess.Popen, log: Path, what: str, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if http_get(url, timeout=5).strip() == expected:
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if proc.poll() is not None:
            pytest.fail(f"{what} exited:\n{tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not healthy in {timeout_s:.0f} s:\n{tail(log)}")
        time.sleep(0.5)


# Prefect ----------------------------------------------------------------------------------
@dataclass
class Server:
    url: str  # PREFECT_API_URL
    env: dict[str, str]  # environment for every Prefect CLI call and the worker
    logs: Path


#: a PREFECT_HOME whose server has run once, made on first use (see `prefect_home`)
_TEMPLATE_HOME: list[Path] = []


def prefect_home(path: Path) -> Path:
    """A new PREFECT_HOME at `path`: a copy of a home whose server already started once.

    On an empty home Prefect's first server (ephemeral or `prefect server start`) runs every
    database migration and registers every block type before it answers (~8-10 s on this
    VM); the copy holds their result, so each server of the suite starts that much sooner.
    The template is made once per session, by a server started and stopped in it.
    """
    if not _TEMPLATE_HOME:
        root = Path(tempfile.mkdtemp(prefix="attnbench-prefect-template-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        with _prefect_server(root, root / "prefect-home"):
            pass
        _TEMPLATE_HOME.append(root / "prefect-home")
    shutil.copytree(_TEMPLATE_HOME[0], path, dirs_exist_ok=True)
    return path


@contextlib.contextmanager
def running_prefect_server(root: Path) -> Iterator[Server]:
    """`prefect server start` on a free local port, PREFECT_HOME and logs under `root`."""
    with _prefect_server(root, prefect_home(root / "prefect-home")) as server:
        yield server


@contextlib.contextmanager
def _prefect_server(root: Path, home: Path) -> Iterator[Server]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    home.mkdir(exist_ok=True)
    logs = root / "logs"
    logs.mkdir()
    env = clean_env(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=url,
        PREFECT_WORKER_QUERY_SECONDS="2",
    )
    server = start(
        prefect("server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"),
        env,
        logs / "server.log",
        root,
    )
    try:
        wait_until_healthy(
            f"{url}/health", b"true", server, logs / "server.log", "prefect server", 90
        )
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


# MLflow -----------------------------------------------------------------------------------
@contextlib.contextmanager
def running_mlflow_server(
    backend_uri: str, artifacts: Path, port: int, log: Path, timeout_s: float = 120
) -> Iterator[str]:
    """The lean server of docs/scale-out.md (one worker, no job runner); yields its URL."""
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_uri,
        "--artifacts-destination", str(artifacts),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    proc = start(cmd, env, log, log.parent)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/health", b"OK", proc, log, "mlflow server", timeout_s)
        yield url
    finally:
        stop(proc)


# PostgreSQL -------------------------------------------------------------------------------
POSTGRES_URL_ENV = "ATTNBENCH_TEST_POSTGRES_URL"


@contextlib.contextmanager
def postgres_database(base_url: str, label: str) -> Iterator[str]:
    """A fresh database `attnbench_<random>_<label>` on the server of `base_url` (an SQLAlchemy
    URL such as postgresql+psycopg2://postgres@127.0.0.1:5432/test); yields its URL and drops
    it afterwards, whoever is still connected."""
    import psycopg2
    from sqlalchemy.engine import make_url

    base = make_url(base_url)
    name = f"attnbench_{secrets.token_hex(4)}_{label}"

    def execute(sql: str) -> None:
        conn = psycopg2.connect(
            host=base.host or "127.0.0.1",
            port=base.port or 5432,
            user=base.username,
            password=base.password,
            dbname=base.database or "postgres",
            connect_timeout=10,
        )
        try:
            conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
