"""The command line: help, and bad input as one line with exit code 2 (no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from attnbench import cli
from attnbench.settings import TELEMETRY_OFF
from tests._cli import run_cli


def test_version_is_the_installed_one(monkeypatch, capsys):
    from importlib.metadata import version

    code, out, _ = run_cli(["--version"], monkeypatch, capsys)
    assert code == 0 and out == f"attnbench {version('attnbench')}\n"


def test_help_lists_the_commands(monkeypatch, capsys):
    code, out, _ = run_cli(["--help"], monkeypatch, capsys)
    assert code == 0 and "train" in out and "evaluate" in out


@pytest.mark.parametrize(
    ("command", "text"),
    [
        ("train", "[default: attnbench-runs/train/NAME-ATTENTION, NAME the config's name]"),
        ("evaluate", "[default: config]"),
        ("bench", "[default: forward]"),
        ("bench", "[cpu float32, cuda bf16]"),
        ("report", "[default: the latest]"),
        ("report", "[default: attnbench-NAME, NAME the config's name]"),
        ("sweep", "[default: britz-sweep; none with --config]"),
        ("tune", "[default: quick; none with --config]"),
        ("run", "Named preset: britz-sweep, britz-sweep-cpu, long, multi30k, multi30k-cpu, quick"),
        ("run", "KEY=VALUE"),
        ("run", "MLflow and Optuna default to files in --workdir"),  # wrapped lines joined
    ],
)
def test_help_shows_the_bracketed_defaults(command, text, monkeypatch, capsys):
    """Typer renders help with Rich, which took "[default: ...]" for markup and dropped it."""
    monkeypatch.setenv("COLUMNS", "250")  # one line per option: no wrapping inside the text
    code, out, _ = run_cli([command, "--help"], monkeypatch, capsys)
    assert code == 0 and text in out


def test_help_does_not_import_torch():
    """`attnbench --help` must stay instant: heavy libraries load inside commands."""
    code = (
        "import sys; sys.argv = ['attnbench', '--help']\n"
        "from attnbench import cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


@pytest.mark.parametrize("entry", ["cli", "flows"])
def test_telemetry_is_off_unless_the_user_chose(entry):
    """The CLI and every flow (they import flows._common) set the telemetry variables in a
    clean environment, and leave a value the user set alone."""
    start = (
        "from attnbench import cli\nsys.argv = ['attnbench', '--help']\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        if entry == "cli"
        else "import flows._common\n"
    )
    code = f"import json, os, sys\n{start}print(json.dumps(dict(os.environ)))"
    env = {k: v for k, v in os.environ.items() if k not in TELEMETRY_OFF}
    env["MLFLOW_DISABLE_TELEMETRY"] = "false"  # the user's choice
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["DO_NOT_TRACK"] == "true" and seen["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert seen["MLFLOW_DISABLE_TELEMETRY"] == "false"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--attention", "bahdanau"], "unknown attention 'bahdanau'; choose one of"),
        (["train", "--preset", "nope"], "unknown preset 'nope'"),
        (["train", "--config", "missing.yaml"], "config file missing.yaml does not exist"),
        (["train", "--set", "train.epochs=0"], "train.epochs: Input should be greater than 0"),
        (["train", "--set", "data.src_lang=xx"], "unknown"),
        (["train", "--set", "data.data_dir=/nonexistent/dir"], "/nonexistent/dir"),
        (["evaluate", "--checkpoint", "nope.pt"], "checkpoint nope.pt does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(argv, message, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(argv, monkeypatch, capsys)
    assert code == 2
    assert message in err
    assert err.startswith("attnbench: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_corrupt_checkpoint_is_refused(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "best.pt"
    bad.write_bytes(b"not a checkpoint at all")
    code, _, err = run_cli(["evaluate", "--checkpoint", str(bad)], monkeypatch, capsys)
    assert code == 2 and "is corrupt or not a torch checkpoint" in err


def test_pickled_code_in_a_checkpoint_is_refused(monkeypatch, capsys, tmp_path):
    import torch

    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": subprocess.Popen}, evil)  # a class: needs pickle
    code, _, err = run_cli(["evaluate", "--checkpoint", str(evil)], monkeypatch, capsys)
    assert code == 2 and "refusing to load it" in err


@pytest.mark.parametrize(
    "flow", ["prepare", "tune", "train", "evaluate", "bench", "report", "benchmark", "sweep"]
)
def test_every_flow_runs_as_a_module(flow):
    """`python -m flows.<name>` is a documented entry point: it must at least parse options."""
    done = subprocess.run(
        [sys.executable, "-m", f"flows.{flow}", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-1500:]
    assert f"python -m flows.{flow}" in done.stdout and "--preset" in done.stdout
    if flow == "sweep":  # its own default preset (quick has no sweep), and its workers
        assert "(default: britz-sweep)" in done.stdout and "--parallel" in done.stdout


def test_a_command_stopped_by_sigterm_leaves_no_mlflow_run_running(tmp_path, monkeypatch, capsys):
    """Runs a SIGTERM'd command still held (an interrupt swallowed on the way, or one that
    came between a run's creation and the block that ends it) end FAILED before it exits."""
    import signal

    from attnbench.tracking import Tracker

    tracker = Tracker.local(tmp_path, "attnbench-test")
    started: list[str] = []

    def command_cut_by_sigterm(args: list[str]) -> None:
        started.append(tracker.start_run("cut"))
        raise SystemExit(128 + signal.SIGTERM)  # what the CLI's SIGTERM handler raises

    monkeypatch.setattr(cli, "_invoke", command_cut_by_sigterm)
    code, _, _ = run_cli(["train"], monkeypatch, capsys)
    assert code == 128 + signal.SIGTERM
    run = tracker.client.get_run(started[0])
    assert run.info.status == "FAILED" and run.data.tags["error"] == "terminated by SIGTERM"


def test_flow_run_heartbeats_are_off_only_on_the_ephemeral_server():
    """Nothing outlives Prefect's ephemeral server to read them (and each cost ~1 s per flow
    run); a real server can use them to mark crashed runs, so there they stay on."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

    default = PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value()
    assert default is not None  # Prefect's default: on
    with temporary_settings(restore_defaults={PREFECT_API_URL}), cli._flows():
        assert get_current_settings().flows.heartbeat_frequency is None
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}), cli._flows():
        assert get_current_settings().flows.heartbeat_frequency == default
    assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() == default  # restored after the command
