"""MLflow, behind one small class: the only module that imports mlflow.

Runs are addressed by id through `MlflowClient`, never through the fluent active-run stack,
because that stack neither crosses processes (a Prefect worker) nor threads reliably
(mlflow #2194): a child run names its parent explicitly with the `mlflow.parentRunId` tag.

Embedded default: `sqlite:///<workdir>/mlflow.db` with artifacts in `<workdir>/mlartifacts`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attnbench.errors import UserError

PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LENGTH = 6000
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
#: the user's choice, read before anything here calls `mlflow.set_tracking_uri`, which
#: overwrites the environment variable for the rest of the process
USER_TRACKING_URI = os.environ.get(TRACKING_URI_ENV) or None


#: runs this process started and has not ended, by id: what `fail_open_runs` closes
_OPEN_RUNS: dict[str, Tracker] = {}


#: signals whose handlers may raise mid-call (SIGTERM as SystemExit, Ctrl+C)
_INTERRUPTS = {signal.SIGTERM, signal.SIGINT}


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGTERM and SIGINT until the block ends, then deliver them to their handlers.

    A run created in the store but not yet in `_OPEN_RUNS` would stay RUNNING for good if a
    handler raised in between (seen in CI: SIGTERM 17 ms into a sweep cell); held, the
    signal arrives once the run is registered, where `fail_open_runs` can close it. Python
    runs handlers in the main thread only, so only there is anything to hold (a thread mask
    would not do: the kernel hands the signal to another thread and Python still runs the
    handler here).
    """
    held = [s for s in _INTERRUPTS if signal.getsignal(s) is not None]
    if threading.current_thread() is not threading.main_thread() or not held:
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in caught:
            signal.raise_signal(signum)


def fail_open_runs(reason: str) -> list[str]:
    """Mark every run this process left open FAILED, with `reason` as its error tag.

    The last step of a worker that must end before its code unwound (a library swallowed
    the SystemExit of SIGTERM, or the store was slow): without it the run would stay
    RUNNING for good. Returns the ids it closed; a store that fails here is skipped (the
    process is exiting, and nothing else could close them either).
    """
    closed = []
    for run_id, tracker in list(_OPEN_RUNS.items()):
        try:
            tracker.end_failed(run_id, reason)
        except Exception as exc:
            print(f"attnbench: could not mark MLflow run {run_id} failed: {exc}", file=sys.stderr)
            continue
        closed.append(run_id)
    return closed


def model_requirements() -> list[str]:
    """pip requirements of a logged model, named rather than inferred.

    MLflow's inference loads the model in a subprocess to see what it imports: ~5 s per
    model on this VM, for the same answer. A pickled attnbench model needs attnbench (its
    classes), torch and cloudpickle (MLflow's pickle module); their own dependencies come
    with them. Pinned to what is installed, without a local label (torch's `+cpu`); a
    package that is not installed (attnbench run from a bare checkout) is left out.
    """
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("attnbench", "torch", "cloudpickle"):
        try:  # PEP 440: a local label follows "+"
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            continue
    return pins


def default_tracking_uri(workdir: Path) -> str:
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}: MLflow params are flat."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


#: what starts an SQLite database file (an empty file is a store MLflow has not set up yet)
SQLITE_HEADER = b"SQLite format 3\x00"


def check_server(uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast with one line when the tracking store cannot be used: an http(s) server
    that does not answer, MLflow's retired file store, an SQLite path that is not a database
    or whose folder is missing (MLflow would create an empty store there and report nothing).
    """
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in ("", "file"):
        raise UserError(
            f"MLFLOW_TRACKING_URI={uri}: MLflow 3 has no file store; use a database "
            "(sqlite:////abs/path/mlflow.db, postgresql://...) or a server (http://host:port)"
        )
    if scheme == "sqlite":
        _check_sqlite(uri)
    if scheme not in ("http", "https"):
        return
    url = uri.rstrip("/") + "/health"
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=min(3.0, timeout_s)) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.5)
    raise UserError(
        f"MLflow tracking server {uri} is unreachable ({last}); start it, or unset "
        "MLFLOW_TRACKING_URI to use the local SQLite store"
    )


def _check_sqlite(uri: str) -> None:
    """sqlite:///relative or sqlite:////absolute: its folder exists, it is a database or new."""
    where = uri.split("://", 1)[-1].split("?", 1)[0] if "://" in uri else ""
    path = Path(where.removeprefix("/")) if where else None
    if path is None or str(path) in ("", ":memory:"):
        return
    if not path.parent.is_dir():
        raise UserError(f"MLflow store {uri}: folder {path.parent} does not exist; check the path")
    if path.is_dir():
        raise UserError(f"MLflow store {uri}: {path} is a folder; name the database file in it")
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as handle:
            if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise UserError(
                    f"MLflow store {uri}: {path} is not an SQLite database; point at the "
                    "mlflow.db of an attnbench workdir, or move the file away"
                )


#: MLflow's caution on pickled models, logged for every model saved (24 in a `quick` run)
PICKLE_CAUTION = "Saving pytorch model by Pickle or CloudPickle format"


class _Once(logging.Filter):
    """Lets records starting with `prefix` through the first time only."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(self.prefix):
            return True
        seen, self.seen = self.seen, True
        return not seen


def _say_once(logger: logging.Logger, prefix: str) -> None:
    """Keep `logger`'s messages starting with `prefix` to one per process (idempotent)."""
    if not any(isinstance(f, _Once) and f.prefix == prefix for f in logger.filters):
        logger.addFilter(_Once(prefix))


class Tracker:
    """One experiment in one tracking store; every call names its run id.

    `create=False` (reading, as reports do) refuses an experiment the store does not hold
    instead of creating an empty one.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_root: Path | None = None,
        create: bool = True,
    ):
        from mlflow.tracking import MlflowClient

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # reports read many
        check_server(tracking_uri)
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None and not create:
            names = sorted(e.name for e in self.client.search_experiments())
            raise UserError(
                f"no MLflow experiment {experiment!r} in {tracking_uri} (it holds: "
                f"{', '.join(names) or 'none'}); pass --experiment, --preset or --workdir of a run"
            )
        if found is None:
            location = None
            if artifact_root is not None:  # else a server chooses (its --artifacts-destination)
                location = (Path(artifact_root).resolve() / experiment).as_uri()
            try:
                self.experiment_id = self.client.create_experiment(experiment, location)
            except Exception:  # another worker created it meanwhile
                found = self.client.get_experiment_by_name(experiment)
                if found is None:
                    raise
                self.experiment_id = found.experiment_id
        else:
            self.experiment_id = found.experiment_id
        self.experiment = experiment

    @classmethod
    def local(cls, workdir: Path, experiment: str, create: bool = True) -> Tracker:
        """The embedded default: SQLite + artifacts under the workdir, or $MLFLOW_TRACKING_URI."""
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        uri = USER_TRACKING_URI or default_tracking_uri(workdir)
        artifacts = workdir / "mlartifacts" if not uri.startswith("http") else None
        return cls(uri, experiment, artifacts, create=create)

    @contextmanager
    def _fluent(self) -> Iterator[None]:
        """Point MLflow's global (fluent) API at this store for one call, then put the
        environment back, so two trackers in one process never write to each other's store."""
        import mlflow

        before = os.environ.get(TRACKING_URI_ENV)
        mlflow.set_tracking_uri(self.tracking_uri)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(TRACKING_URI_ENV, None)
            else:
                os.environ[TRACKING_URI_ENV] = before

    # runs -----------------------------------------------------------------------------
    def start_run(
        self, name: str, parent_id: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> str:
        all_tags = {k: str(v) for k, v in (tags or {}).items() if v is not None}
        if parent_id is not None:
            all_tags[PARENT_TAG] = parent_id
        with _interrupts_deferred():  # created and registered, or neither
            run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
            _OPEN_RUNS[run.info.run_id] = self
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)
        _OPEN_RUNS.pop(run_id, None)

    @contextmanager
    def run(
        self, name: str, parent_id: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> Iterator[str]:
        """A run that ends FAILED (with the error as a tag) when its block raises."""
        run_id = self.start_run(name, parent_id, tags)
        try:
            yield run_id
        except BaseException as exc:
            self.fail(run_id, exc)
            raise
        else:
            self.end_run(run_id)

    def fail(self, run_id: str, exc: BaseException) -> None:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        self.end_failed(run_id, f"{type(exc).__name__}: {exc}", status)

    def end_failed(self, run_id: str, error: str, status: str = "FAILED") -> None:
        """End the run with `status`, `error` (what went wrong) as its `error` tag."""
        self.client.set_tag(run_id, "error", error[:4000])
        self.end_run(run_id, status)

    # logging ----------------------------------------------------------------------------
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = flatten(params)
        items = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(flat.items())]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start : start + 100])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            if value is not None:
                self.client.set_tag(run_id, key, str(value))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if _is_number(v)]
        if items:
            self.client.log_batch(run_id, metrics=items)

    def log_dict(self, run_id: str, data: Any, artifact_file: str) -> None:
        self.client.log_dict(run_id, data, artifact_file)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(run_id, figure, artifact_file)

    def log_pytorch_model(self, run_id: str, model: Any, name: str = "model") -> None:
        """An MLflow Model (loadable with mlflow.pytorch.load_model) inside this run."""
        import mlflow
        import mlflow.pytorch

        _say_once(logging.getLogger("mlflow.pytorch"), PICKLE_CAUTION)

        with self._fluent(), mlflow.start_run(run_id=run_id, experiment_id=self.experiment_id):
            # pickle format: torch.export ("pt2") cannot trace packed RNN sequences
            mlflow.pytorch.log_model(
                model,
                name=name,
                serialization_format="pickle",
                pip_requirements=model_requirements(),
            )

    def download_artifact(self, run_id: str, path: str, dest: Path) -> Path:
        return Path(self.client.download_artifacts(run_id, path, str(dest)))

    def has_artifact(self, run_id: str, path: str) -> bool:
        folder = path.rpartition("/")[0] or None
        return any(a.path == path for a in self.client.list_artifacts(run_id, folder))

    def load_json_artifact(self, run_id: str, path: str) -> Any:
        with tempfile.TemporaryDirectory() as tmp:
            return json.loads(self.download_artifact(run_id, path, Path(tmp)).read_text())

    # reading ----------------------------------------------------------------------------
    def holds_run(self, run_id: str) -> bool:
        """Whether `run_id` is a run of this experiment (a user may type any id)."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        return run.info.experiment_id == self.experiment_id

    def search_runs(self, filter_string: str = "") -> Any:
        """All runs of the experiment as a pandas DataFrame (mlflow.search_runs)."""
        import mlflow

        with self._fluent():
            return mlflow.search_runs(
                experiment_ids=[self.experiment_id], filter_string=filter_string, max_results=50000
            )

    def runs_with_models(self) -> set[str]:
        """Ids of the runs that logged an MLflow Model (MLflow 3 LoggedModels)."""
        import mlflow

        with self._fluent():
            models = mlflow.search_logged_models(
                experiment_ids=[self.experiment_id], output_format="list"
            )
        return {m.source_run_id for m in models}

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ui_command(workdir: Path, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """`mlflow server` over the workdir's store, light on a laptop: one worker, no job runner."""
    workdir = Path(workdir).resolve()
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", default_tracking_uri(workdir),
        "--artifacts-destination", str(workdir / "mlartifacts"),
        "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip


def start_ui(workdir: Path, host: str = "127.0.0.1", port: int = 5000) -> subprocess.Popen:
    """Start the MLflow UI for a workdir; a busy port is a UserError, not a traceback."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror as exc:  # not an address: the port is not the problem
            raise UserError(
                f"--host {host} is not an address of this machine ({exc.strerror}); keep "
                "127.0.0.1, or pass an interface's address"
            ) from exc
        except OSError as exc:
            raise UserError(
                f"port {port} on {host} is busy ({exc.strerror}); pass --port with a free port"
            ) from exc
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return subprocess.Popen(ui_command(workdir, host, port), env=env)
