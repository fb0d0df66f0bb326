"""The MLflow wrapper: hierarchy by explicit parent ids, failures recorded, fast failure."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from attnbench.errors import UserError
from attnbench.tracking import PARENT_TAG, Tracker, check_server, flatten, free_port


@pytest.fixture
def tracker(tmp_path):
    return Tracker.local(tmp_path, "attnbench-test")


def test_flatten_nested_settings():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": [1], "f": {}}) == {
        "a.b": 1, "a.c.d": 2, "e": [1], "f": {},
    }  # fmt: skip


def test_store_is_sqlite_in_the_workdir_with_artifacts_beside_it(tmp_path, tracker):
    assert tracker.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    run_id = tracker.start_run("r")
    tracker.log_dict(run_id, {"x": 1}, "config.json")
    tracker.end_run(run_id)
    assert (tmp_path / "mlflow.db").is_file()
    assert list((tmp_path / "mlartifacts").rglob("config.json"))


def test_children_name_their_parent_and_metrics_keep_their_steps(tracker):
    parent = tracker.start_run("pipeline", tags={"kind": "pipeline"})
    child = tracker.start_run("trial", parent_id=parent, tags={"attention": "dot", "seed": 3})
    tracker.log_params(child, {"train": {"lr": 0.01}, "model": {"attention": "dot"}})
    for epoch, loss in enumerate([3.0, 2.0, 1.5], start=1):
        tracker.log_metrics(child, {"train/loss": loss, "ignored": "text"}, step=epoch)
    tracker.end_run(child)
    tracker.end_run(parent)
    run = tracker.client.get_run(child)
    assert run.data.tags[PARENT_TAG] == parent and run.data.tags["seed"] == "3"
    assert run.data.params == {"train.lr": "0.01", "model.attention": "dot"}
    assert tracker.metric_history(child, "train/loss") == [(1, 3.0), (2, 2.0), (3, 1.5)]
    assert "ignored" not in run.data.metrics
    frame = tracker.search_runs(f"tags.`{PARENT_TAG}` = '{parent}'")
    assert list(frame["run_id"]) == [child]


def test_a_failing_block_marks_the_run_failed_with_its_error(tracker):
    with pytest.raises(ValueError), tracker.run("boom") as run_id:
        raise ValueError("loss is nan")
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "ValueError: loss is nan"


def test_fail_open_runs_closes_only_the_runs_this_process_left_open(tracker):
    from attnbench.tracking import fail_open_runs

    done = tracker.start_run("finished")
    tracker.end_run(done)
    with pytest.raises(ValueError), tracker.run("failed") as failed:
        raise ValueError("boom")
    left_open = tracker.start_run("cut")
    assert fail_open_runs("terminated by signal 15") == [left_open]
    assert fail_open_runs("again") == []  # closed runs leave the list
    status = {rid: tracker.client.get_run(rid) for rid in (done, failed, left_open)}
    assert status[done].info.status == "FINISHED" and "error" not in status[done].data.tags
    assert status[failed].data.tags["error"] == "ValueError: boom"
    assert status[left_open].info.status == "FAILED"
    assert status[left_open].data.tags["error"] == "terminated by signal 15"


def test_unreachable_server_is_one_clear_error_within_the_timeout():
    uri = f"http://127.0.0.1:{free_port()}"
    tic = time.monotonic()
    with pytest.raises(UserError, match=r"unreachable.*unset MLFLOW_TRACKING_URI"):
        check_server(uri, timeout_s=2)
    assert time.monotonic() - tic < 15


def test_two_stores_in_one_process_stay_apart(tmp_path):
    first = Tracker.local(tmp_path / "a", "exp")
    second = Tracker.local(tmp_path / "b", "exp")
    first.end_run(first.start_run("in-a"))
    second.end_run(second.start_run("in-b"))
    assert list(first.search_runs()["tags.mlflow.runName"]) == ["in-a"]
    assert list(second.search_runs()["tags.mlflow.runName"]) == ["in-b"]
    assert Tracker.local(tmp_path / "c", "exp").tracking_uri.endswith("c/mlflow.db")


def test_a_logged_model_names_its_requirements_and_loads_back(tracker, tmp_path):
    """Requirements are named, not inferred (MLflow's inference loads the model in a
    subprocess, ~5 s a model); the model must still load and compute the same."""
    import mlflow
    import torch

    from attnbench.models import build_model
    from tests.conftest import tiny_synthetic_config

    model = build_model(tiny_synthetic_config().model, 12, 12).eval()
    with tracker.run("final") as run_id:
        tracker.log_pytorch_model(run_id, model)
    assert tracker.runs_with_models() == {run_id}
    (logged,) = mlflow.search_logged_models(
        experiment_ids=[tracker.experiment_id], output_format="list"
    )
    folder = Path(
        mlflow.artifacts.download_artifacts(logged.artifact_location, dst_path=str(tmp_path))
    )
    requirements = (folder / "requirements.txt").read_text().split()
    torch_version = torch.__version__.split("+")[0]
    assert f"torch=={torch_version}" in requirements and "attnbench==0.1.0" in requirements
    assert any(line.startswith("mlflow") for line in requirements)
    loaded = mlflow.pytorch.load_model(f"models:/{logged.model_id}").eval()
    src = torch.randint(3, 12, (2, 5))
    tgt = torch.randint(3, 12, (2, 4))
    lengths = torch.tensor([5, 5])
    with torch.no_grad():
        assert torch.equal(loaded(src, lengths, tgt)[0], model(src, lengths, tgt)[0])
    # MLflow's pickle caution is said once per process, not once per model
    from attnbench.tracking import PICKLE_CAUTION, _Once

    filters = logging.getLogger("mlflow.pytorch").filters
    assert [f for f in filters if isinstance(f, _Once) and f.prefix == PICKLE_CAUTION]


def test_say_once_lets_one_matching_record_through(caplog):
    """The filter behind MLflow's pickle caution; the caution's words are MLflow's own."""
    import inspect

    import mlflow.pytorch

    from attnbench.tracking import PICKLE_CAUTION, _say_once

    assert PICKLE_CAUTION in inspect.getsource(mlflow.pytorch.save_model)
    logger = logging.getLogger("attnbench.test.say_once")
    _say_once(logger, "caution")
    _say_once(logger, "caution")  # idempotent: still one filter
    assert len(logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=logger.name):
        for _ in range(3):
            logger.warning("caution: pickles")
            logger.info("other news")
    messages = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert messages == ["caution: pickles", "other news", "other news", "other news"]


def test_a_sigterm_during_run_creation_arrives_once_the_run_is_registered(tracker, monkeypatch):
    """The race seen in CI: SIGTERM while MLflow creates a run. Held until the run is in the
    open-runs list, the SystemExit then leaves a run `fail_open_runs` can close."""
    import os
    import signal

    from attnbench import tracking

    create = tracker.client.create_run

    def create_then_signal(*args, **kwargs):
        run = create(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-call, as a supervisor's would
        time.sleep(0.05)
        return run

    def exit_on_sigterm(signum, frame):
        raise SystemExit(128 + signum)

    monkeypatch.setattr(tracker.client, "create_run", create_then_signal)
    previous = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        with pytest.raises(SystemExit):
            tracker.start_run("cut while created")
        assert signal.getsignal(signal.SIGTERM) is exit_on_sigterm  # its handler is back
    finally:
        signal.signal(signal.SIGTERM, previous)
    closed = tracking.fail_open_runs("terminated by signal 15")
    assert len(closed) == 1
    assert tracker.client.get_run(closed[0]).info.status == "FAILED"
