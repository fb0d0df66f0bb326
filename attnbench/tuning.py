"""Optuna: one study per (benchmark, dataset, attention variant), the same space and budget
for every variant, trials logged as MLflow child runs.

Storage: a journal file in the workdir by default (fast and safe for parallel processes on one
machine, unlike SQLite), or an RDB URL such as PostgreSQL so workers on several machines add
trials to one study. An interrupted study resumes from its storage: finished trials are kept,
trials left RUNNING by a process that died on this host are marked failed, and only the rest
of the budget is run.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from attnbench.config import (
    ExperimentConfig,
    ParamSpace,
    TuneConfig,
    config_to_dict,
    validate_config,
)
from attnbench.errors import UserError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
RDB_PREFIXES = ("postgresql", "mysql", "sqlite")


STORAGE_ENV = "ATTNBENCH_OPTUNA_STORAGE"


def make_storage(url: str | None, workdir: Path) -> optuna.storages.BaseStorage:
    """`tune.storage`, else $ATTNBENCH_OPTUNA_STORAGE (set once per worker machine), else the
    journal file `<workdir>/optuna.journal`; an RDB URL gives RDBStorage with heartbeats."""
    url = url or os.environ.get(STORAGE_ENV) or None
    if url is None or url.startswith("journal:"):
        path = Path(url.removeprefix("journal:")) if url else Path(workdir) / "optuna.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if not url.startswith(RDB_PREFIXES):
        raise UserError(
            f"tune.storage '{url.split('://', 1)[0]}://...' is not supported; use null (journal "
            "file in the workdir), 'journal:/path/file', or an RDB URL like "
            "postgresql+psycopg2://user@host/db"
        )
    last: Exception | None = None
    for attempt in range(3):
        try:
            with warnings.catch_warnings():  # heartbeats are chosen on purpose (resumption)
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, heartbeat_interval=30, grace_period=120)
        except Exception as exc:  # host down, bad credentials, or a schema-creation race
            last = exc
            if "connect" in str(exc).lower() or "no module" in str(exc).lower():
                break  # retrying will not help
            time.sleep(0.5 * (attempt + 1))
    text = str(last).strip()
    first = text.splitlines()[0][:200] if text else type(last).__name__
    raise UserError(f"cannot open Optuna storage {without_password(url)}: {first}") from last


def without_password(url: str) -> str:
    """The URL as it may be printed: an error reaches logs and Prefect's database."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable as a database URL: show only its scheme
        return url.split("://", 1)[0] + "://..."


def make_sampler(cfg: TuneConfig, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """TPE, seeded; arguments spelled out because Optuna 5 changed the multivariate default."""
    return optuna.samplers.TPESampler(
        seed=cfg.sampler_seed if seed is None else seed,
        n_startup_trials=cfg.startup_trials,
        multivariate=False,
    )


def worker_seed(cfg: TuneConfig, study: optuna.Study) -> int:
    """The sampler seed of this process: `tune.sampler_seed` for a fresh study in one process
    (reproducible); mixed with the study's progress and this worker's identity when resuming
    or sharing a study, since every process seeded alike would replay the same trials."""
    shared = isinstance(study._storage, RDBStorage)
    existing = len(study.get_trials(deepcopy=False))
    if not shared and existing == 0:
        return cfg.sampler_seed
    key = f"{cfg.sampler_seed}:{existing}:{socket.gethostname()}:{os.getpid()}"
    return zlib.crc32(key.encode())


def make_pruner(cfg: TuneConfig, epochs: int) -> optuna.pruners.BasePruner:
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials, n_warmup_steps=1)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def sampler_settings(cfg: TuneConfig) -> dict[str, Any]:
    """What to record beside results so a study can be rebuilt exactly."""
    return {
        "sampler": "TPESampler",
        "sampler_seed": cfg.sampler_seed,
        "n_startup_trials": cfg.startup_trials,
        "multivariate": False,
        "pruner": cfg.pruner,
    }


def suggest(trial: optuna.Trial, space: dict[str, ParamSpace]) -> dict[str, Any]:
    """Sample every setting of the space; keys are dotted config paths."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        if spec.type == "categorical":
            values[key] = trial.suggest_categorical(key, spec.choices)
        elif spec.type == "int":
            values[key] = trial.suggest_int(key, int(spec.low), int(spec.high), log=spec.log)
        else:
            values[key] = trial.suggest_float(key, spec.low, spec.high, log=spec.log)
    return values


def apply_settings(cfg: ExperimentConfig, settings: dict[str, Any]) -> ExperimentConfig:
    """A copy of `cfg` with dotted-key settings applied, validated again."""
    tree = config_to_dict(cfg)
    for key, value in settings.items():
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise UserError(f"tune.space key '{key}': '{part}' is not a config section")
            node = node[part]
        if parts[-1] not in node:
            raise UserError(f"tune.space key '{key}' is not a config setting")
        node[parts[-1]] = value
    return validate_config(tree, origin="tuned config")


def study_name(benchmark: str, dataset: str, variant: str) -> str:
    return f"{benchmark}/{dataset}/{variant}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


OrphanHandler = Callable[[optuna.trial.FrozenTrial], None]


def fail_orphaned_trials(study: optuna.Study, on_orphan: OrphanHandler | None = None) -> list[int]:
    """Mark RUNNING trials whose process on this host has died as FAIL; returns their numbers.

    The journal storage has no heartbeat, so a killed tuning process would otherwise leave
    its trial RUNNING forever. RDB storage also fails stale trials through heartbeats.
    `on_orphan` lets the caller close what the dead process left open (its MLflow run).
    """
    host = socket.gethostname()
    orphans = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("host") == host and not _pid_alive(int(attrs.get("pid", -1))):
            study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", "process died")
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            orphans.append(trial.number)
            if on_orphan is not None:
                on_orphan(trial)
    if isinstance(study._storage, RDBStorage):
        optuna.storages.fail_stale_trials(study)
    return orphans


def wait_for_other_workers(
    study: optuna.Study,
    minutes: float,
    poll_s: float = 5.0,
    on_orphan: OrphanHandler | None = None,
) -> None:
    """Trials still running elsewhere may become the best: wait for them (bounded)."""
    deadline = time.monotonic() + 60 * minutes
    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        fail_orphaned_trials(study, on_orphan)
        if time.monotonic() > deadline:
            raise UserError(
                f"study {study.study_name}: trials still running on other workers after "
                f"{minutes} minutes; rerun later (finished trials are kept) or raise "
                "tune.wait_minutes"
            )
        time.sleep(poll_s)


@dataclass
class StudyResult:
    name: str
    best_params: dict[str, Any]
    best_value: float | None
    states: dict[str, int]
    orphans_failed: list[int]


def run_study(
    name: str,
    objective: Callable[[optuna.Trial], float],
    cfg: TuneConfig,
    epochs: int,
    storage: optuna.storages.BaseStorage,
    on_orphan: OrphanHandler | None = None,
) -> StudyResult:
    """Create or resume a study and run trials until `cfg.n_trials` have finished in total.

    Failed trials (exceptions, NaN loss, out of memory) are recorded and the study goes on.
    """
    for attempt in range(3):  # workers starting together race to create the study
        try:
            study = optuna.create_study(
                study_name=name,
                storage=storage,
                direction="maximize" if cfg.metric == "val/bleu" else "minimize",
                sampler=make_sampler(cfg),
                pruner=make_pruner(cfg, epochs),
                load_if_exists=True,
            )
            break
        except Exception:
            if attempt == 2:
                raise
            time.sleep(0.5 * (attempt + 1))
    orphans = fail_orphaned_trials(study, on_orphan)
    seed = worker_seed(cfg, study)
    study.sampler = make_sampler(cfg, seed)

    def tagged(trial: optuna.Trial) -> float:
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("sampler_seed", seed)
        return objective(trial)

    allotted = (*FINISHED, TrialState.RUNNING)  # running elsewhere: another worker's share
    remaining = cfg.n_trials - len(study.get_trials(deepcopy=False, states=allotted))
    if remaining > 0:
        study.optimize(
            tagged,
            n_trials=remaining,
            catch=(Exception,),
            callbacks=[optuna.study.MaxTrialsCallback(cfg.n_trials, states=allotted)],
            gc_after_trial=True,
        )
    wait_for_other_workers(study, cfg.wait_minutes, on_orphan=on_orphan)
    states = {s.name: len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = study.best_trial if complete else None
    return StudyResult(
        name,
        dict(best.params) if best else {},
        best.value if best else None,
        {k: v for k, v in states.items() if v},
        orphans,
    )
