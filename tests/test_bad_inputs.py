"""The catalogue of bad inputs (README, Troubleshooting): each is one line on stderr starting
`attnbench: error:`, exit code 2, no traceback, and nothing started half-way."""

from __future__ import annotations

import gzip
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from attnbench import cli, tracking
from attnbench.tracking import free_port
from tests._cli import run_cli


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def parallel_config(tmp: Path, src: str, tgt: str) -> Path:
    write(tmp / "c" / "train.src", src)
    write(tmp / "c" / "train.tgt", tgt)
    return write(
        tmp / "parallel.yaml",
        f"data:\n  dataset: parallel\n  tokenizer: word\n  files:\n"
        f"    train: {{src: {tmp / 'c' / 'train.src'}, tgt: {tmp / 'c' / 'train.tgt'}}}\n"
        f"    val: {{src: {tmp / 'c' / 'train.src'}, tgt: {tmp / 'c' / 'train.tgt'}}}\n",
    )


def non_utf8_config(tmp: Path) -> Path:
    config = parallel_config(tmp, "a b\n", "b a\n")
    write(tmp / "c" / "train.tgt", b"\xff\xfe bad\n")
    return config


def corrupt_multi30k(tmp: Path, shared: Path) -> Path:
    copy = tmp / "data" / "multi30k"
    shutil.copytree(shared / "multi30k", copy)
    target = copy / "val.en.gz"
    target.chmod(0o644)
    target.write_bytes(gzip.compress(b"A tampered line.\n" * 1014))
    return tmp / "data"


def pickled_checkpoint(tmp: Path) -> Path:
    torch.save({"model": {}, "code": Path}, tmp / "evil.pt")  # a class: needs full pickle
    return tmp / "evil.pt"


def other_model(tmp: Path) -> Path:
    return write(tmp / "m.yaml", "name: tiny\ndata: {dataset: synthetic, tokenizer: word}\n")


def existing_run(tmp: Path) -> Path:
    from attnbench.train import train
    from tests.conftest import tiny_synthetic_config

    train(tiny_synthetic_config(train={"epochs": 1}), tmp / "run", progress=False)
    return tmp / "run"


CASES = {
    "unknown config key": (
        lambda t, s: ["train", "-c", str(write(t / "c.yaml", "train:\n  epoch: 3\n"))],
        "train.epoch: unknown setting",
    ),
    "wrong type": (lambda t, s: ["train", "--set", "train.lr=fast"], "train.lr: Input should be"),
    "negative size": (
        lambda t, s: ["train", "--set", "model.hidden_dim=-8"],
        "model.hidden_dim: Input should be greater than 0",
    ),
    "not YAML": (
        lambda t, s: ["train", "-c", str(write(t / "c.yaml", "train: [1,\n"))],
        "not valid YAML",
    ),
    "missing config file": (lambda t, s: ["train", "-c", str(t / "no.yaml")], "does not exist"),
    "unknown preset": (lambda t, s: ["run", "--preset", "huge"], "unknown preset 'huge'"),
    "a sweep without dimensions": (
        lambda t, s: ["sweep", "--preset", "quick"],
        "has no sweep.attn_dims; use --preset britz-sweep",
    ),
    "a zero attention dimension": (
        lambda t, s: ["sweep", "--set", "sweep.attn_dims=[128, 0]"],
        "sweep.attn_dims.1: Input should be greater than 0",
    ),
    "unknown attention": (
        lambda t, s: ["train", "--attention", "cosine"],
        "unknown attention 'cosine'; choose one of",
    ),
    "unknown attention in the grid": (
        lambda t, s: ["run", "--set", "benchmark.variants=[dot, cosine]"],
        "unknown attention 'cosine'",
    ),
    "baseline outside the grid": (
        lambda t, s: ["run", "--set", "benchmark.variants=[dot]"],
        "benchmark.baseline 'additive' is not in benchmark.variants",
    ),
    "path-escaping name": (
        lambda t, s: ["run", "--set", "name=../../etc"],
        "name: use 1-64 letters",
    ),
    "missing data folder": (
        lambda t, s: ["train", "--set", f"data.data_dir={t / 'nowhere'}"],
        "data folder not found",
    ),
    "corrupt data file": (
        lambda t, s: ["run", "--set", f"data.data_dir={corrupt_multi30k(t, s)}"],
        "val.en.gz",
    ),
    "unknown split": (
        lambda t, s: [
            "run",
            "--set",
            "data.test_splits=[test_2099]",
            "--set",
            f"data.data_dir={s}",
        ],
        "test_2099",
    ),
    "unknown language": (
        lambda t, s: ["train", "--set", "data.src_lang=xx", "--set", f"data.data_dir={s}"],
        "xx",
    ),
    "mismatched line counts": (
        lambda t, s: ["train", "-c", str(parallel_config(t, "a b\nc d\n", "b a\n"))],
        "line counts differ",
    ),
    "non-UTF-8 text": (lambda t, s: ["train", "-c", str(non_utf8_config(t))], "UTF-8"),
    "empty data file": (
        lambda t, s: ["train", "-c", str(parallel_config(t, "", ""))],
        "empty",
    ),
    "missing checkpoint": (
        lambda t, s: ["evaluate", "--checkpoint", str(t / "best.pt")],
        "does not exist",
    ),
    "corrupt checkpoint": (
        lambda t, s: ["evaluate", "--checkpoint", str(write(t / "best.pt", b"\x00garbage"))],
        "is corrupt or not a torch checkpoint",
    ),
    "a folder as --hypotheses": (
        lambda t, s: [
            "evaluate",
            "--checkpoint",
            str(existing_run(t) / "best.pt"),
            "--split",
            "test",
            "--hypotheses",
            str(t),
        ],
        "is a folder; name a file in it",
    ),
    "a folder as checkpoint": (
        lambda t, s: ["evaluate", "--checkpoint", str(t)],
        "is a folder; pass a checkpoint file in it",
    ),
    "checkpoint with pickled code": (
        lambda t, s: ["evaluate", "--checkpoint", str(pickled_checkpoint(t))],
        "refusing to load it",
    ),
    "unsupported storage URL": (
        lambda t, s: ["tune", "--set", "tune.storage=redis://localhost"],
        "tune.storage: use null",
    ),
    "unreachable storage": (
        lambda t, s: [
            "tune",
            "--set",
            f"tune.storage=postgresql+psycopg2://x@127.0.0.1:{free_port()}/db",
        ],
        "cannot open Optuna storage",
    ),
    "existing run without --resume": (
        lambda t, s: ["train", "--out", str(existing_run(t)), "--set", f"data.data_dir={s}"],
        "pass --resume to continue",
    ),
    "resume with another model": (
        lambda t, s: [
            "train",
            "--out",
            str(existing_run(t)),
            "--resume",
            "-c",
            str(other_model(t)),
        ],
        "settings differ",
    ),
    "override without =": (lambda t, s: ["train", "--set", "train.lr"], "expected key=value"),
    "report without a store": (
        lambda t, s: ["report", "--workdir", str(t / "empty")],
        "no MLflow store",
    ),
    "option value out of range": (
        lambda t, s: ["evaluate", "--checkpoint", str(t / "best.pt"), "--beam", "0"],
        "Invalid value for '--beam'",
    ),
    "unknown option": (
        lambda t, s: ["train", "--epochs", "3"],
        "No such option: --epochs (see `attnbench train --help`)",
    ),
    "missing required option": (lambda t, s: ["evaluate"], "Missing option '--checkpoint'"),
    "unknown command": (lambda t, s: ["trian"], "No such command 'trian'"),
    "run directory is a file": (
        lambda t, s: ["train", "--out", str(write(t / "f", "x")), "--set", f"data.data_dir={s}"],
        "is a file, not a folder",
    ),
    "workdir is a file": (
        lambda t, s: ["bench", "--workdir", str(write(t / "f", "x")), "--lengths", "64"],
        "--workdir",
    ),
    "reports folder is a file": (
        lambda t, s: [
            "run",
            "--reports-dir",
            str(write(t / "f", "x")),
            "--set",
            f"data.data_dir={s}",
        ],
        "--reports-dir",
    ),
    "a bad value of a command-line option": (
        lambda t, s: ["bench", "--dtype", "int8"],
        "--dtype int8: benchmark.bench_dtype: Input should be 'float32', 'bfloat16' or",
    ),
    "a bad --set value": (
        lambda t, s: ["train", "--set", "train.epochs=-1"],
        "--set 'train.epochs=-1': train.epochs: Input should be greater than 0",
    ),
    "a folder as config file": (lambda t, s: ["train", "-c", str(t)], "is a folder; pass a YAML"),
    "no benchmark modes": (lambda t, s: ["bench", "--modes", ""], "bench_modes is empty"),
    "unknown benchmark implementation": (
        lambda t, s: ["bench", "--set", "benchmark.bench_implementations=[sdpa, nosuch]"],
        "unknown implementation(s) nosuch; choose from materialised",
    ),
}
FOLDER_CASES = {"run directory is a file", "workdir is a file", "reports folder is a file"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_line(case, tmp_path, shared_data, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_argv, expected = CASES[case]
    code, _, err = run_cli(make_argv(tmp_path, shared_data), monkeypatch, capsys)
    assert code == 2, err
    assert err.startswith("attnbench: error: ") and err.count("\n") == 1, err
    assert expected in err
    if case in FOLDER_CASES:
        assert f"{tmp_path / 'f'} is a file, not a folder; pass a folder" in err
    assert "Traceback" not in err
    assert not (tmp_path / "attnbench-runs" / "runs").exists()  # nothing started half-way


@pytest.mark.slow
def test_unreachable_mlflow_server_fails_fast_before_anything_runs(monkeypatch, capsys, tmp_path):
    import time

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tracking, "USER_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    tic = time.monotonic()
    code, _, err = run_cli(["run", "--preset", "quick"], monkeypatch, capsys)
    assert code == 2 and "MLflow tracking server" in err and "unreachable" in err
    assert time.monotonic() - tic < 15
    assert not (tmp_path / "attnbench-runs").exists()


def test_catalogue_has_at_least_twenty_entries():
    assert len(CASES) >= 20


def test_a_bad_kernel_backend_setting_stops_the_command_before_it_starts(
    tmp_path, monkeypatch, capsys
):
    """ATTNBENCH_CPU_KERNEL_BACKEND is read deep in the attention; the CLI checks it first."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATTNBENCH_CPU_KERNEL_BACKEND", "fast")
    code, _, err = run_cli(["run", "--preset", "quick"], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "ATTNBENCH_CPU_KERNEL_BACKEND='fast' is not a CPU kernel backend" in err
    assert "auto, numpy, inductor" in err
    assert not (tmp_path / "attnbench-runs").exists()


@pytest.mark.parametrize("args", [["run", "--help"], ["--help"], ["--version"]])
def test_a_bad_kernel_backend_setting_does_not_block_help_or_version(args, monkeypatch, capsys):
    """--help is how a user finds out what to set it to: only commands that work check it."""
    monkeypatch.setenv("ATTNBENCH_CPU_KERNEL_BACKEND", "fast")
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0 and err == "", err
    assert ("Usage: attnbench" in out) if "--help" in args else out.startswith("attnbench ")


@pytest.mark.slow  # starts (and times out) a real ephemeral Prefect server in a fresh process
def test_a_prefect_server_that_does_not_start_in_time_is_one_clear_line(tmp_path, shared_data):
    """Prefect's own RuntimeError and traceback become one line saying what to raise; the
    user's PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS wins over attnbench's default
    (here 1 s, shorter than any start: a fresh process in a fresh PREFECT_HOME)."""
    import subprocess

    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"),
           "ATTNBENCH_DATA_DIR": str(shared_data),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1"}  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    attnbench = Path(sys.executable).with_name("attnbench")
    done = subprocess.run([str(attnbench), "run", "--preset", "quick"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    # Prefect's own log lines (starting, then stopping, its server) stay around it
    errors = [line for line in done.stderr.splitlines() if line.startswith("attnbench: error:")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert "Prefect's temporary server did not start in time" in errors[0]
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in errors[0]


def test_the_ephemeral_server_gets_longer_to_start_unless_the_user_says(monkeypatch):
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as TIMEOUT

    from flows._common import EPHEMERAL_STARTUP_TIMEOUT_S, process_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
    with process_settings():
        assert TIMEOUT.value() == EPHEMERAL_STARTUP_TIMEOUT_S == 120
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "7")
    with process_settings():
        assert TIMEOUT.value() == 7  # the user's setting stays


def _store(workdir: Path, experiment: str) -> Path:
    tracking.Tracker.local(workdir, experiment)
    return workdir


REPORT_STORE_CASES = {
    "MLflow's retired file store": (
        lambda t: ("file:///" + str(t / "mlruns"), t / "w"),
        "MLflow 3 has no file store",
    ),
    "an SQLite store in a missing folder": (
        lambda t: (f"sqlite:///{t / 'nowhere' / 'mlflow.db'}", t / "w"),
        f"folder {Path('nowhere')} does not exist",
    ),
    "a workdir store that is not a database": (
        lambda t: (None, write(t / "w" / "mlflow.db", "not a database\n").parent),
        "is not an SQLite database",
    ),
    "a store without the experiment": (
        lambda t: (None, _store(t / "w", "attnbench-other")),
        "no MLflow experiment 'attnbench-quick' in sqlite:",
    ),
    "a run id the experiment does not hold": (
        lambda t: (None, _store(t / "w", "attnbench-quick")),
        "no run 'deadbeef' in MLflow experiment 'attnbench-quick'",
    ),
}


@pytest.mark.parametrize("case", sorted(REPORT_STORE_CASES))
def test_report_refuses_a_store_it_cannot_read_and_changes_nothing(
    case, tmp_path, monkeypatch, capsys
):
    """`attnbench report` only reads: it must not create a store, an experiment or a report."""
    make, expected = REPORT_STORE_CASES[case]
    uri, workdir = make(tmp_path)
    monkeypatch.setattr(tracking, "USER_TRACKING_URI", uri)
    argv = ["report", "--workdir", str(workdir), "--reports-dir", str(tmp_path / "reports")]
    if case.startswith("a run id"):
        argv += ["--run", "deadbeef"]
    code, _, err = run_cli(argv, monkeypatch, capsys)
    assert code == 2 and err.startswith("attnbench: error: ") and err.count("\n") == 1, err
    assert expected in err.replace(str(tmp_path) + "/", "")
    assert not (tmp_path / "nowhere").exists()
    assert not any((tmp_path / "reports").rglob("*.md"))
    if case == "a store without the experiment":
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking.default_tracking_uri(workdir))
        assert "attnbench-quick" not in {e.name for e in client.search_experiments()}


def test_ctrl_c_in_a_command_closes_its_runs_and_says_how_to_resume(monkeypatch, capsys):
    """Typer turns Ctrl+C inside a command into exit code 130; the CLI still marks the runs
    it left open FAILED and prints the resume hint."""
    import attnbench.config

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    closed = []
    monkeypatch.setattr(attnbench.config, "load_config", interrupted)
    monkeypatch.setattr(cli, "_fail_runs_left_open", closed.append)
    code, _, err = run_cli(["train"], monkeypatch, capsys)
    assert code == 130
    assert err.strip().endswith(f"attnbench: interrupted; {cli.RESUME_HINT}"), err
    assert closed == ["interrupted (Ctrl+C)"]


def test_an_unreachable_storage_from_the_environment_is_caught_before_the_flow(
    tmp_path, monkeypatch, capsys
):
    """Workers get their Optuna storage from ATTNBENCH_OPTUNA_STORAGE (docker/compose.yaml):
    the pre-run checks open that one too, and the message hides the password."""
    monkeypatch.chdir(tmp_path)
    url = f"postgresql+psycopg2://nobody:s3cret@127.0.0.1:{free_port()}/db"
    monkeypatch.setenv("ATTNBENCH_OPTUNA_STORAGE", url)
    code, _, err = run_cli(["tune"], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "cannot open Optuna storage postgresql+psycopg2://nobody:***@127.0.0.1" in err
    assert "s3cret" not in err
    assert not (tmp_path / "attnbench-runs" / "runs").exists()
