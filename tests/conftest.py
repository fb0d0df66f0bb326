"""Shared fixtures: the local data copy, telemetry off, small configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnbench.settings import telemetry_off_by_default

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

telemetry_off_by_default()


def pytest_terminal_summary(terminalreporter) -> None:
    """Say which stores the scale-out tests used, so a CI machine that lost its PostgreSQL
    shows it in the log (also under -q) instead of quietly testing journal files only."""
    import os

    if os.environ.get("ATTNBENCH_TEST_POSTGRES_URL"):
        line = "attnbench: the PostgreSQL tests ran ($ATTNBENCH_TEST_POSTGRES_URL)"
    else:
        line = (
            "attnbench: the PostgreSQL tests did NOT run (ATTNBENCH_TEST_POSTGRES_URL unset; "
            "`.ci/run` sets it when pg_isready answers on 127.0.0.1:5432)"
        )
    terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline copies of Multi30k and FLORES (../shared/data beside the repository)."""
    if not (SHARED_DATA / "multi30k").is_dir() or not (SHARED_DATA / "flores200").is_dir():
        pytest.fail(
            f"local data not found at {SHARED_DATA}; CI must have ../shared beside the clone"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Tokenizer/download caches go to a per-session temp dir, never the user's home."""
    monkeypatch.setenv("ATTNBENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def tiny_synthetic_config(**sections):
    """A reverse task and a model small enough to train in seconds (for loop tests)."""
    from attnbench.config import validate_config

    tree = {
        "name": "tiny",
        "data": {
            "dataset": "synthetic",
            "tokenizer": "word",
            "synthetic": {
                "task": "reverse",
                "n_train": 300,
                "n_val": 40,
                "n_test": 40,
                "min_len": 3,
                "max_len": 7,
                "vocab_size": 8,
            },
        },
        "model": {"emb_dim": 16, "hidden_dim": 32, "dropout": 0.1},
        "train": {"epochs": 4, "batch_size": 32, "batch_tokens": None, "lr": 0.01, "patience": 10},
        "eval": {"beam_size": 2, "batch_size": 64},
    }
    for section, values in sections.items():
        tree.setdefault(section, {}).update(values)
    return validate_config(tree)
