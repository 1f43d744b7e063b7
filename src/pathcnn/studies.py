"""Optuna studies: storage, naming, samplers and pruners from params, the search space, and the study's plots.

Nothing here trains or logs; the tune stage wraps these around the one training function.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from pathcnn.errors import ParamsError, PathcnnError
from pathcnn.params import Choices, FloatRange, IntRange, Objective, Pruner, Sampler, TrainParams, TuneParams
from pathcnn.processes import process_alive

STORAGE_ENV = "PATHCNN_OPTUNA_STORAGE"
HOST_ATTR, PID_ATTR = "host", "pid"
PARENT_RUN_ATTR = "mlflow_parent_run_id"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Random trials before TPE models the results: small enough that a 6-trial default study has TPE trials too.
TPE_STARTUP_TRIALS = 4
# Median pruning: never prune during the first trials or epochs, when there is nothing fair to compare with.
MEDIAN_STARTUP_TRIALS, MEDIAN_WARMUP_EPOCHS = 2, 2
# A trial's figures beside its value (user attributes): held_out_accuracy only under a held-out objective.
TRIAL_FIGURES = ("train_accuracy", "val_accuracy", "held_out_accuracy", "train_val_gap")
ZERO_SUFFIX = "_zero"  # zero: true on a range is searched as a yes/no parameter <name>_zero, then the range


def storage_url(tune: TuneParams, journal_file: Path) -> str:
    """Where the study lives: env PATHCNN_OPTUNA_STORAGE, else tune.storage, else the journal file."""
    return os.environ.get(STORAGE_ENV) or tune.storage or str(journal_file)


def is_database_url(url: str) -> bool:
    """An SQLAlchemy URL (sqlite:///, postgresql+psycopg2://, mysql://) rather than a journal file path."""
    return "://" in url


def open_storage(url: str, heartbeat_seconds: int) -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats for a database URL, else a journal file (created with its folder)."""
    if is_database_url(url):
        engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        with warnings.catch_warnings():  # heartbeats are marked experimental; they are what fails dead trials
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=heartbeat_seconds,
                grace_period=2 * heartbeat_seconds,
            )
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def describe_storage(url: str) -> str:
    """The storage for messages, without a password."""
    if not is_database_url(url):
        return url
    scheme, _, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':')[0]}{at}{location}" if at else url


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def study_name(model: str, tune: TuneParams, train: TrainParams, seed: int, split_digest: str) -> str:
    """<model>-<objective>-<hash of everything that changes what trials run>; n_trials, workers, storage left out.

    `tune` is the searched part (Params.search()): a train field fixed by a value is hashed with the other
    train values, so fixing it starts a new study. `dvc exp run -S tune.n_trials=100` continues the same study.
    """
    search = {
        "space": {name: dimension.model_dump(mode="json") for name, dimension in sorted(tune.space.items())},
        "objective": tune.objective.value,
        "sampler": tune.sampler.value,
        "pruner": tune.pruner.value,
        "max_epochs": tune.max_epochs,
        # Searched fields and the final fit's epoch budget do not change what a trial runs.
        "train": train.model_dump(mode="json", exclude={"use_tuned", "max_epochs", *tune.space}),
        "seed": seed,
        "split": split_digest,
    }
    digest = hashlib.sha256(json.dumps(search, sort_keys=True).encode()).hexdigest()
    return f"{model}-{tune.objective.value}-{digest[:10]}"


def direction(objective: Objective) -> str:
    """Losses are minimised, accuracies maximised."""
    return "minimize" if objective.minimised else "maximize"


def sampler_seed(base_seed: int, worker_index: int, trials_before: int) -> int:
    """The seed of one worker's sampler.

    A fresh study run by one worker gets base.seed itself, so the same params give the same trials.
    Other workers, and runs that continue a study, get a seed mixed from base.seed, the worker index
    and the number of trials already stored, so they do not repeat the first trials' random draws.
    """
    if worker_index == 0 and trials_before == 0:
        return base_seed
    return int(np.random.SeedSequence([base_seed, worker_index, trials_before]).generate_state(1)[0])


def make_sampler(kind: Sampler, seed: int) -> optuna.samplers.BaseSampler:
    """A seeded sampler."""
    if kind is Sampler.random:
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS)


def make_pruner(kind: Pruner, max_epochs: int, held_out: bool = False) -> optuna.pruners.BasePruner:
    """The pruner; steps are epochs, or folds for a held-out objective (a trial may stop after its first fold)."""
    if kind is Pruner.median:
        warmup = 0 if held_out else min(MEDIAN_WARMUP_EPOCHS, max_epochs - 1)
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=warmup)
    if kind is Pruner.hyperband:
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource="auto" if held_out else max_epochs, reduction_factor=3
        )
    return optuna.pruners.NopPruner()


def open_study(
    name: str,
    storage: optuna.storages.BaseStorage,
    tune: TuneParams,
    seed: int,
    worker_index: int = 0,
    description: Mapping[str, str] | None = None,
) -> optuna.Study:
    """Create the study or load it (load_if_exists), with this worker's sampler.

    The objective's name is the study's metric name, so optuna-dashboard labels its axis with it; description
    (model, classes, objective) becomes user attributes, shown in the dashboard's study list.
    """
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction=direction(tune.objective),
        pruner=make_pruner(tune.pruner, tune.max_epochs, tune.objective.held_out),
        load_if_exists=True,
    )
    if study.metric_names != [tune.objective.value]:
        with warnings.catch_warnings():  # marked experimental; it is what names the dashboard's axis
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([tune.objective.value])
    for key, value in (description or {}).items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    study.sampler = make_sampler(tune.sampler, sampler_seed(seed, worker_index, len(study.get_trials(deepcopy=False))))
    return study


def enqueue_defaults(study: optuna.Study, tune: TuneParams, train: TrainParams) -> None:
    """Make params.train's own values the study's first trial, so the best found is never worse than them.

    `tune` is the searched part (Params.search()), `train` holds each searched field's start value. Only on a
    study with no trials yet.
    """
    if study.get_trials(deepcopy=False):
        return
    defaults = train.model_dump(mode="json")
    raw: dict[str, Any] = {}
    for name, dimension in tune.space.items():
        value = defaults[name]
        if isinstance(dimension, FloatRange) and dimension.zero:
            raw[zero_name(name)] = value == 0
            if value == 0:
                continue
        if isinstance(dimension, Choices):
            in_space = value in dimension.choices
        else:
            in_space = dimension.low <= value <= dimension.high
        if not in_space:
            return  # params.train lies outside the searched space: nothing sensible to enqueue
        raw[name] = value
    study.enqueue_trial(raw, user_attrs={"source": "tune.space start values"}, skip_if_exists=True)


def zero_name(name: str) -> str:
    """The yes/no parameter that switches a zero-allowing range's field to exactly 0."""
    return f"{name}{ZERO_SUFFIX}"


def suggest_raw(trial: optuna.Trial, space: Mapping[str, Choices | IntRange | FloatRange]) -> dict[str, Any]:
    """Ask the trial for its parameters, as Optuna records them.

    A zero-allowing range is a conditional parameter: first <name>_zero (yes/no), then the range only when no,
    so the dashboard shows the value used (0 as <name>_zero true, with no sampled value beside it).
    """
    raw: dict[str, Any] = {}
    for name, dimension in space.items():
        if isinstance(dimension, Choices):
            raw[name] = trial.suggest_categorical(name, list(dimension.choices))
        elif isinstance(dimension, IntRange):
            raw[name] = trial.suggest_int(name, dimension.low, dimension.high, log=dimension.log)
        else:
            if dimension.zero:
                raw[zero_name(name)] = trial.suggest_categorical(zero_name(name), [False, True])
                if raw[zero_name(name)]:
                    continue
            raw[name] = trial.suggest_float(name, dimension.low, dimension.high, log=dimension.log)
    return raw


def decode(space: Mapping[str, Choices | IntRange | FloatRange], raw: Mapping[str, Any]) -> dict[str, Any]:
    """Train field values of a trial's recorded parameters: <name>_zero true means the field is exactly 0."""
    values = {}
    for name, dimension in space.items():
        if isinstance(dimension, FloatRange) and dimension.zero and raw.get(zero_name(name)):
            values[name] = 0.0
        elif name in raw:
            values[name] = raw[name]
    return values


def train_params_of(base: TrainParams, values: Mapping[str, Any], source: str) -> TrainParams:
    """base with values overridden, validated; a ParamsError names the source when they do not fit."""
    try:
        return TrainParams.model_validate({**base.model_dump(), **values})
    except ValueError as error:
        raise ParamsError(f"{source}: params {dict(values)} are not valid train params ({error})") from None


def suggest_train_params(trial: optuna.Trial, tune: TuneParams, base: TrainParams) -> TrainParams:
    """The train params of one trial: params.train with the sampled dimensions, tune.max_epochs epochs."""
    values = decode(tune.space, suggest_raw(trial, tune.space))
    return train_params_of(base, {**values, "max_epochs": tune.max_epochs}, f"trial {trial.number}")


def state_counts(study: optuna.Study) -> Counter[TrialState]:
    """How many trials of the study are in each state."""
    return Counter(trial.state for trial in study.get_trials(deepcopy=False))


def finished_count(counts: Mapping[TrialState, int]) -> int:
    """Complete plus pruned trials: what n_trials counts."""
    return sum(counts.get(state, 0) for state in FINISHED)

    return True


def mark_worker(trial: optuna.Trial) -> None:
    """Record which process runs a trial, so a later run can tell that it died."""
    trial.set_user_attr(HOST_ATTR, socket.gethostname())
    trial.set_user_attr(PID_ATTR, os.getpid())


def fail_dead_trials(study: optuna.Study, grace_seconds: float) -> list[int]:
    """RUNNING trials whose worker died are set FAIL; returns their numbers.

    Database storages fail trials whose heartbeat stopped (on any host). The journal file has no
    heartbeat, so trials started on this host are checked by process id; a trial that never recorded
    its process (killed right after it was created) is failed once it is older than grace_seconds.
    """
    running = {trial.number for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if not running:
        return []
    with warnings.catch_warnings():  # fail_stale_trials is marked experimental; it does nothing for journals
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    oldest = datetime.now() - timedelta(seconds=grace_seconds)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get(PID_ATTR)
        if pid is None:
            dead = trial.datetime_start is not None and trial.datetime_start < oldest
        else:
            dead = trial.user_attrs.get(HOST_ATTR) == host and pid != os.getpid() and not process_alive(int(pid))
        if dead:  # Optuna's public way to finish another process's trial; a trial finished meanwhile is left alone
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    return sorted(
        trial.number
        for trial in study.get_trials(deepcopy=False)
        if trial.number in running and trial.state is TrialState.FAIL
    )


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, or None when no trial completed."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial


def best_params(study: optuna.Study | None, tune: TuneParams, train: TrainParams, model: str) -> dict[str, Any]:
    """The payload of best_params.json: the best trial's train values, or params.train's when none completed."""
    trial = best_trial(study) if study is not None else None
    counts = state_counts(study) if study is not None else Counter()
    payload: dict[str, Any] = {
        "model": model,
        "study_name": study.study_name if study is not None else None,
        "objective": tune.objective.value,
        "direction": direction(tune.objective),
        "n_complete": counts.get(TrialState.COMPLETE, 0),
        "n_pruned": counts.get(TrialState.PRUNED, 0),
        "n_failed": counts.get(TrialState.FAIL, 0),
    }
    if trial is None:
        defaults = train.model_dump(mode="json")
        return {
            **payload,
            "params": {name: defaults[name] for name in tune.space},
            "best_value": None,
            "best_trial": None,
            "note": "no complete trial: these are params.train's values",
        }
    return {
        **payload,
        "params": decode(tune.space, trial.params),
        "best_value": trial.value,
        "best_trial": trial.number,
        **{key: trial.user_attrs.get(key) for key in ("train_accuracy", "val_accuracy", "train_val_gap", "epochs")},
    }


def trials_frame(trials: Sequence[FrozenTrial], space: Mapping[str, Choices | IntRange | FloatRange]) -> pd.DataFrame:
    """One row per trial: number, state, value, decoded params, train/val/held-out accuracy, gap and epochs."""
    rows = []
    for trial in trials:
        values = decode(space, trial.params)
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "value": trial.value,
                **{name: values.get(name) for name in space},
                **{key: trial.user_attrs.get(key) for key in TRIAL_FIGURES},
                "epochs": trial.user_attrs.get("epochs"),
            }
        )
    columns = ["number", "state", "value", *space, *TRIAL_FIGURES, "epochs"]
    return pd.DataFrame(rows, columns=columns)


def note_figure(title: str, note: str) -> Figure:
    """A placeholder figure that says why a plot is missing."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.0, 3.0), dpi=110)
    axes.set_axis_off()
    axes.set_title(title, fontsize=10)
    axes.text(0.5, 0.5, note, ha="center", va="center", wrap=True, fontsize=9)
    return figure


def history_figure(study: optuna.Study, title: str) -> Figure:
    """Objective value per trial with the best so far (or a note when no trial completed)."""
    from optuna.visualization.matplotlib import plot_optimization_history

    if best_trial(study) is None:
        return note_figure(title, "no complete trial yet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = plot_optimization_history(study)
    axes.set_title(title, fontsize=10)
    figure = axes.figure
    figure.set_size_inches(7.0, 3.6)
    figure.tight_layout()
    return figure


def importance_figure(study: optuna.Study, title: str, seed: int) -> tuple[Figure, str | None]:
    """fANOVA parameter importances, or a note figure and the reason when they cannot be computed."""
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization.matplotlib import plot_param_importances

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        reason = f"parameter importances need at least 2 complete trials (have {len(complete)})"
        return note_figure(title, reason), reason
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            axes = plot_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed))
    except (RuntimeError, ValueError) as error:  # e.g. every complete trial drew the same params
        reason = f"parameter importances not computable: {error}"
        return note_figure(title, reason), reason
    axes.set_title(title, fontsize=10)
    figure = axes.figure
    figure.set_size_inches(7.0, 3.6)
    figure.tight_layout()
    return figure, None


WAIT_SECONDS = 2.0  # poll interval while other workers finish the last trials
MAX_CONSECUTIVE_FAILURES = 5  # a worker whose trials keep raising stops instead of looping forever


def work(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int, grace_seconds: float) -> int:
    """Run trials until the study holds n_trials finished (complete or pruned) trials; returns how many ran here.

    Trials of dead workers are failed first. Trials running in other workers count as on their way,
    so N workers add up to n_trials instead of each running n_trials.
    """
    ran, consecutive_failures = 0, 0
    last: list[FrozenTrial] = []
    while True:
        fail_dead_trials(study, grace_seconds)
        counts = state_counts(study)
        finished = finished_count(counts)
        if finished >= n_trials:
            return ran
        if finished + counts.get(TrialState.RUNNING, 0) >= n_trials:
            time.sleep(WAIT_SECONDS)
            continue
        last.clear()
        # catch: a trial that raises (out of memory, a bad combination) is recorded FAIL; Ctrl+C still stops.
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[lambda _, trial: last.append(trial)])
        ran += 1
        consecutive_failures = consecutive_failures + 1 if last and last[-1].state is TrialState.FAIL else 0
        if consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            raise PathcnnError(
                f"study {study.study_name}: {consecutive_failures} trials in a row failed; "
                "run with --debug or look at the FAIL trials' MLflow runs, fix the cause and run tune again"
            )
