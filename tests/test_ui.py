"""`attnbench ui`: the MLflow UI over a workdir, on 127.0.0.1, with clear errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from attnbench.tracking import Tracker, free_port


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "attnbench.cli", "ui", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )


@pytest.mark.slow
def test_ui_serves_the_workdir_store_on_localhost(tmp_path):
    Tracker.local(tmp_path, "exp").start_run("r")
    port = free_port()
    proc = _cli("--workdir", str(tmp_path), "--port", str(port))
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()[-2000:]
                assert time.monotonic() < deadline, "MLflow UI did not come up"
                time.sleep(0.5)
        # bound to loopback only: the port is not open on another local address
        other = socket.gethostbyname(socket.gethostname())
        if other != "127.0.0.1":
            with socket.socket() as sock:
                assert sock.connect_ex((other, port)) != 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            subprocess.run(["pkill", "-9", "-g", str(proc.pid)], check=False)
            out, _ = proc.communicate()
    assert f"http://127.0.0.1:{port}" in out


def test_busy_port_and_missing_store_are_one_line_errors(tmp_path):
    Tracker.local(tmp_path, "exp")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        proc = _cli("--workdir", str(tmp_path), "--port", str(busy))
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert f"port {busy} on 127.0.0.1 is busy" in err and err.count("\n") == 1
    proc = _cli("--workdir", str(tmp_path / "nothing"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no MLflow store" in err


def test_a_host_that_is_not_an_address_is_not_called_a_busy_port(tmp_path):
    Tracker.local(tmp_path, "exp")
    proc = _cli("--workdir", str(tmp_path), "--host", "256.1.1.1")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.count("\n") == 1, err
    assert "--host 256.1.1.1 is not an address of this machine" in err and "busy" not in err
