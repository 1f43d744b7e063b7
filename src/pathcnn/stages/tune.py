"""Stage `tune`: an Optuna study per model over the train params, each trial a nested MLflow run.

The study lives in a storage that outlives the process (a journal file, or any SQLAlchemy URL), so a
killed run continues where it stopped, and several workers (processes or machines) share one study.
Trials fit the same CNN as the train stage on the train split, judged on the validation split
(tune.objective val_*) or on images left out of the train split one per class (held_out_*); the test
split is never read.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from pathcnn import studies
from pathcnn.artifacts import write_csv, write_json
from pathcnn.console import say
from pathcnn.errors import PathcnnError
from pathcnn.figures import save_figure
from pathcnn.params import Objective, Params, TrainParams, TuneParams, load_params
from pathcnn.patchsets import PatchSet, patch_set, read_split, split_sets
from pathcnn.stages.arguments import add_model_arguments

WAIT_SECONDS = 2.0  # poll interval while other workers finish the last trials
MAX_CONSECUTIVE_FAILURES = 5  # a worker whose trials keep raising stops instead of looping forever
OUTPUTS = ("best_params.json", "trials.csv", "history.png", "importance.png")


@dataclass(frozen=True)
class TrialResult:
    """What one trial measured: the objective, accuracies of the restored model, and per-epoch history."""

    value: float
    pruned: bool
    train_accuracy: float
    val_accuracy: float
    epochs: int
    history: dict[str, list[float]] = field(default_factory=dict)
    fit: str = "ok"  # 'failed': train accuracy within chance; such a trial is pruned, never ranked
    held_out_accuracy: float | None = None  # held-out objective: mean accuracy on the left-out images

    @property
    def train_val_gap(self) -> float:
        """Train minus validation accuracy: the overfitting the search fights."""
        return self.train_accuracy - self.val_accuracy


def objective_reporter(trial: optuna.Trial, objective: Objective, val: PatchSet, values: list[float]) -> Any:
    """A Keras callback that reports the objective each epoch and stops training when the pruner says so."""
    import keras

    from pathcnn.metrics import classification_metrics
    from pathcnn.training import predict_probabilities

    class ObjectiveReporter(keras.callbacks.Callback):
        pruned_at: int | None = None

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            if objective is Objective.val_balanced_accuracy:
                probabilities = predict_probabilities(self.model, val.patches)
                value = classification_metrics(val.labels, probabilities)["balanced_accuracy"]
                logs["val_balanced_accuracy"] = value
            else:
                value = float(logs[objective.value])
            values.append(value)
            trial.report(value, epoch)
            if trial.should_prune():
                self.pruned_at = epoch + 1
                self.model.stop_training = True

    return ObjectiveReporter()


def fit_trial(
    trial: optuna.Trial,
    sets: dict[str, PatchSet],
    class_names: tuple[str, ...],
    train: TrainParams,
    objective: Objective,
    seed: int,
) -> TrialResult:
    """Fit the train stage's CNN on the train split through train_and_evaluate, report to the pruner, score val."""
    import keras

    from pathcnn.metrics import classification_metrics
    from pathcnn.training import train_and_evaluate

    parts = {part: sets[part] for part in ("train", "val")}
    values: list[float] = []
    reporters: list[Any] = []

    def reporter_for(fitted: dict[str, PatchSet]) -> list[Any]:
        # A reporter that predicts scores the validation patches as the fit sees them (stain-normalised).
        reporters.append(objective_reporter(trial, objective, fitted["val"], values))
        return reporters

    try:
        outcome = train_and_evaluate(parts, class_names, train, seed, callbacks=reporter_for)
    finally:
        keras.backend.clear_session()
    reporter = reporters[0]
    metrics = outcome.evaluation.metrics
    if objective is Objective.val_loss:
        value = min(outcome.history["val_loss"])  # early stopping restored the weights of this epoch
    else:
        scores = classification_metrics(sets["val"].labels, outcome.probabilities["val"])
        value = scores[objective.value.removeprefix("val_")]
    history = {**outcome.history, f"objective_{objective.value}": values}
    return TrialResult(
        value=float(value),
        pruned=reporter.pruned_at is not None,
        train_accuracy=metrics["train_accuracy"],
        val_accuracy=metrics["val_accuracy"],
        epochs=outcome.epochs_run,
        history=history,
        fit=metrics["fit"],
    )


def held_out_loss(labels: np.ndarray, probabilities: np.ndarray, class_count: int) -> float:
    """Mean cross-entropy of the held-out patches' true class (sklearn's log_loss)."""
    from sklearn.metrics import log_loss

    return float(log_loss(labels, probabilities, labels=list(range(class_count))))


def fit_held_out_trial(
    trial: optuna.Trial,
    pool: PatchSet,
    class_names: tuple[str, ...],
    train: TrainParams,
    objective: Objective,
    seed: int,
    val_fraction: float,
) -> TrialResult:
    """Fit the CNN once per held-out fold of the train split's patches; the value is the mean over folds.

    Each fold trains (early stopping on its own validation part) through train_and_evaluate, the train
    stage's path, and is scored on the patches of the images it left out. After each fold the running mean
    goes to the pruner (steps are folds). A fold that did not fit its own training patches fails the trial.
    """
    from pathcnn.splits import held_out_folds
    from pathcnn.training import train_and_evaluate

    folds = held_out_folds(pool.labels, pool.frame["image_id"].to_numpy(), val_fraction, seed)
    scores: list[float] = []
    records: dict[str, list[float]] = {key: [] for key in ("train_accuracy", "val_accuracy", "test_accuracy")}
    history: dict[str, list[float]] = {}
    fits, epochs, pruned = [], 0, False
    for step, (fold, assignment) in enumerate(folds):
        sets = {part: pool.subset(assignment == part) for part in ("train", "val", "test")}
        outcome = train_and_evaluate(sets, class_names, train, seed)
        metrics = outcome.evaluation.metrics
        for key in records:
            records[key].append(metrics[key])
        fits.append(metrics["fit"])
        epochs += outcome.epochs_run
        history.update({f"{fold.name}_{key}": values for key, values in outcome.history.items()})
        if objective.minimised:
            score = held_out_loss(sets["test"].labels, outcome.probabilities["test"], len(class_names))
        else:
            score = metrics["test_accuracy"]
        scores.append(score)
        running = float(np.mean(scores))
        history.setdefault(f"objective_{objective.value}", []).append(running)
        trial.report(running, step)
        if step < len(folds) - 1 and trial.should_prune():
            pruned = True
            break
    return TrialResult(
        value=float(np.mean(scores)),
        pruned=pruned,
        train_accuracy=float(np.mean(records["train_accuracy"])),
        val_accuracy=float(np.mean(records["val_accuracy"])),
        epochs=epochs,
        history=history,
        fit="failed" if "failed" in fits else "ok",
        held_out_accuracy=float(np.mean(records["test_accuracy"])),
    )


@dataclass(frozen=True)
class TuneContext:
    """Everything a trial needs, read once per worker: the train and val parts, or (held-out objective) both as one."""

    model: str
    params: Params
    sets: dict[str, PatchSet]
    study_name: str
    experiment: str
    parent_run_id: str


def make_objective(context: TuneContext) -> Callable[[optuna.Trial], float]:
    """The Optuna objective: a nested MLflow run around fit_trial; pruned trials raise TrialPruned."""
    from pathcnn import tracking

    params, tune = context.params, context.params.search()

    def objective(trial: optuna.Trial) -> float:
        studies.mark_worker(trial)
        train = studies.suggest_train_params(trial, tune, params.train)
        tags = {
            "model": context.model,
            "optuna_study": context.study_name,
            "trial_number": str(trial.number),
            "trial_state": TrialState.RUNNING.name,
        }
        run_name = f"{context.model} trial {trial.number}"
        with tracking.tracked_run(context.experiment, run_name, "trial", tags, context.parent_run_id) as run:
            trial.set_user_attr("mlflow_run_id", run.info.run_id)
            tracking.log_params({"train": train.model_dump(), "trial_number": trial.number, "seed": params.base.seed})
            try:
                if tune.objective.held_out:
                    result = fit_held_out_trial(
                        trial,
                        context.sets["pool"],
                        params.model(context.model).classes,
                        train,
                        tune.objective,
                        params.base.seed,
                        params.split.val_fraction,
                    )
                else:
                    result = fit_trial(
                        trial,
                        context.sets,
                        params.model(context.model).classes,
                        train,
                        tune.objective,
                        params.base.seed,
                    )
            except Exception:
                tracking.set_tags({"trial_state": TrialState.FAIL.name})
                tracking.log_params({"trial_state": TrialState.FAIL.name})
                raise
            # A trial that did not fit its own training patches is pruned: its objective is not a model's.
            pruned = result.pruned or result.fit == "failed"
            state = TrialState.PRUNED if pruned else TrialState.COMPLETE
            trial.set_user_attr("fit", result.fit)
            tracking.set_tags({"fit": result.fit})
            attributes = {
                "train_accuracy": result.train_accuracy,
                "val_accuracy": result.val_accuracy,
                "train_val_gap": result.train_val_gap,
                "epochs": result.epochs,
            }
            if result.held_out_accuracy is not None:
                attributes["held_out_accuracy"] = result.held_out_accuracy
            for key, value in attributes.items():
                trial.set_user_attr(key, value)
            # Optuna records a pruned trial's last reported value; a complete trial's value is its best epoch's.
            shown = result.history[f"objective_{tune.objective.value}"][-1] if pruned else result.value
            tracking.log_history(result.history)
            # The headline metrics are the trial's values in trials.csv and the dashboard.
            tracking.log_metrics({**attributes, tune.objective.value: shown})
            tracking.set_tags({"trial_state": state.name})
            tracking.log_params({"trial_state": state.name})
        say(
            f"tune {context.model} trial {trial.number}: {state.name.lower()} after {result.epochs} epochs"
            + (" (did not fit: train accuracy within chance)" if result.fit == "failed" else "")
            + f", {tune.objective.value} {shown:.4f}, train {result.train_accuracy:.3f}, val {result.val_accuracy:.3f}"
        )
        if pruned:
            raise optuna.TrialPruned(
                f"pruned after epoch {result.epochs}" + (", did not fit" if result.fit == "failed" else "")
            )
        return result.value

    return objective


def direction_word(tune: TuneParams) -> str:
    """'minimise' or 'maximise', for the study's description."""
    return "minimise" if studies.direction(tune.objective) == "minimize" else "maximise"


def work(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int, grace_seconds: float) -> int:
    """Run trials until the study holds n_trials finished (complete or pruned) trials; returns how many ran here.

    Trials of dead workers are failed first. Trials running in other workers count as on their way,
    so N workers add up to n_trials instead of each running n_trials.
    """
    ran, consecutive_failures = 0, 0
    last: list[FrozenTrial] = []
    while True:
        studies.fail_dead_trials(study, grace_seconds)
        counts = studies.state_counts(study)
        finished = studies.finished_count(counts)
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


def spawn_workers(count: int, arguments: list[str]) -> None:
    """Start `count` worker processes of this command and wait for all; Ctrl+C or SIGTERM stops them."""
    command = [sys.executable, "-m", "pathcnn.cli", "tune", *arguments, "--worker-only"]
    processes = [subprocess.Popen([*command, "--worker-index", str(index)]) for index in range(count)]
    try:
        codes = [process.wait() for process in processes]
    except KeyboardInterrupt:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()
        raise
    failed = [f"worker {index} exited with {code}" for index, code in enumerate(codes) if code != 0]
    if failed:
        raise PathcnnError(f"tune: {'; '.join(failed)} (its error is printed above); run tune again to continue")


def parent_run_id(study: optuna.Study, experiment: str, model: str, storage: str) -> tuple[str, bool]:
    """The study's MLflow parent run (from the study's user attrs), created when absent; (id, created).

    A study storage shared by a team can hold a parent run of another MLflow store or experiment (another
    experiment_prefix); this experiment then gets its own parent run.
    """
    from pathcnn import tracking

    known = study.user_attrs.get(studies.PARENT_RUN_ATTR)
    if known and tracking.run_exists(known, experiment):
        return known, False
    tags = {"model": model, "optuna_study": study.study_name, "optuna_storage": storage}
    run_id = tracking.create_run(experiment, study.study_name, "study", tags)
    study.set_user_attr(studies.PARENT_RUN_ATTR, run_id)
    return run_id, True


def write_outputs(study: optuna.Study | None, params: Params, model: str, out_dir: Path) -> dict[str, Any]:
    """best_params.json, trials.csv, history.png and importance.png; returns the best-params payload."""
    tune = params.search()
    best = studies.best_params(study, tune, params.train, model)
    title = f"{model}: {tune.objective.value}"
    if study is None:
        write_csv(out_dir / "trials.csv", studies.trials_frame([], tune.space))
        save_figure(studies.note_figure(title, "tune.n_trials is 0: no study"), out_dir / "history.png")
        save_figure(studies.note_figure(title, "tune.n_trials is 0: no study"), out_dir / "importance.png")
    else:
        write_csv(out_dir / "trials.csv", studies.trials_frame(study.get_trials(deepcopy=False), tune.space))
        save_figure(studies.history_figure(study, title), out_dir / "history.png")
        figure, missing = studies.importance_figure(study, title, params.base.seed)
        save_figure(figure, out_dir / "importance.png")
        if missing:
            best["importance_note"] = missing
    write_json(out_dir / "best_params.json", best)
    return best


def log_study(study: optuna.Study, best: dict[str, Any], params: Params, out_dir: Path) -> None:
    """On the active parent run: the search settings, best params and value, trial counts and the plots.

    Trial runs whose worker died are closed FAILED with trial_state FAIL, whichever host ran them.
    """
    from pathcnn import tracking

    tune = params.search()
    tracking.log_params(
        {
            "tune": tune.model_dump(exclude={"n_trials", "workers", "storage", "heartbeat_seconds"}),
            "seed": params.base.seed,
        }
    )
    tracking.set_tags(
        {
            "best_trial": str(best["best_trial"]),
            **{f"best_params.{name}": str(value) for name, value in best["params"].items()},
        }
    )
    step = sum(best[key] for key in ("n_complete", "n_pruned", "n_failed"))
    tracking.log_metrics(
        {key: best[key] for key in ("n_complete", "n_pruned", "n_failed")}
        | {f"best_{tune.objective.value}": best["best_value"], "best_train_val_gap": best.get("train_val_gap")},
        step=step,
    )
    for name in OUTPUTS:
        tracking.log_artifact(out_dir / name)
    for trial in study.get_trials(deepcopy=False):
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id and trial.state is not TrialState.RUNNING:
            tracking.close_run(run_id, {"trial_state": trial.state.name})


def run(
    model: str,
    patches_dir: Path,
    split_file: Path,
    out_dir: Path,
    journal_file: Path,
    params_path: Path,
    workers: int | None = None,
    worker_index: int | None = None,
) -> dict[str, Any]:
    """Continue (or start) the model's study until it holds tune.n_trials finished trials, then write outputs.

    worker_index set: only work on the study (a worker started by a launcher or by hand), write nothing.
    """
    from pathcnn import tracking

    params = load_params(params_path)
    tune, class_names = params.search(), params.model(model).classes
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one say() line per trial instead of Optuna's INFO log
    split = read_split(split_file)
    if (tune.n_trials == 0 or not tune.space) and worker_index is None:
        why = "tune.n_trials is 0" if tune.n_trials == 0 else "no train field is `tuned`"
        say(f"tune {model}: {why}, writing the start values as best params")
        return write_outputs(None, params, model, out_dir)
    name = studies.study_name(model, tune, params.train, params.base.seed, studies.file_digest(split_file))
    url = studies.storage_url(tune, tracking.project_root() / journal_file)
    description = {
        "model": model,
        "classes": " vs ".join(class_names),
        "objective": f"{direction_word(tune)} {tune.objective.value} "
        + ("(mean over images left out of the train split)" if tune.objective.held_out else "on the validation split"),
        "searched": ", ".join(tune.space),
    }
    storage = studies.open_storage(url, tune.heartbeat_seconds)
    study = studies.open_study(name, storage, tune, params.base.seed, worker_index or 0, description)
    studies.enqueue_defaults(study, tune, params.train)
    tracking.setup()
    experiment = tracking.experiment_name(params.base.experiment_prefix, model)
    parent, created = parent_run_id(study, experiment, model, studies.describe_storage(url))
    grace = 2.0 * tune.heartbeat_seconds
    say(f"tune {model}: study {name} in {studies.describe_storage(url)}, {tune.n_trials} finished trials wanted")

    def work_here() -> int:
        rows = split[split["split"].isin(["train", "val"])]
        if tune.objective.held_out:  # one pool: the objective's folds re-split it by image
            sets = {"pool": patch_set(patches_dir, rows, class_names)}
        else:
            sets = split_sets(patches_dir, rows, class_names)
        context = TuneContext(model, params, sets, name, experiment, parent)
        return work(study, make_objective(context), tune.n_trials, grace)

    if worker_index is not None:
        work_here()
        if created:
            tracking.close_run(parent, {}, status="FINISHED")
        return {}
    with tracking.tracked_run(experiment, name, "study", {"optuna_study": name}, run_id=parent):
        tracking.describe_experiment(experiment, model, class_names)
        tracking.log_split_inputs(split[split["split"].isin(["train", "val"])], split_file, model)
        count = workers or tune.workers
        if count == 1:
            work_here()
        else:
            arguments = [
                *("--model", model, "--patches", str(patches_dir), "--split", str(split_file)),
                *("--out", str(out_dir), "--journal", str(journal_file), "--params", str(params_path)),
            ]
            spawn_workers(count, arguments)
        study = studies.open_study(name, storage, tune, params.base.seed)
        best = write_outputs(study, params, model, out_dir)
        log_study(study, best, params, out_dir)
    value = best["best_value"]
    say(
        f"tune {model}: {best['n_complete']} complete, {best['n_pruned']} pruned, {best['n_failed']} failed; "
        + (
            f"best {tune.objective.value} {value:.4f} (trial {best['best_trial']})"
            if value is not None and math.isfinite(value)
            else "no complete trial"
        )
    )
    return best


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of the stage."""
    add_model_arguments(parser)
    parser.add_argument(
        "--journal",
        type=Path,
        required=True,
        help="journal file of the study when neither tune.storage nor PATHCNN_OPTUNA_STORAGE names a database",
    )
    parser.add_argument("--workers", type=int, help="worker processes (default tune.workers)")
    parser.add_argument(
        "--worker-only",
        action="store_true",
        help="only run trials on the shared study (write no outputs): for extra shells or machines",
    )
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the launcher


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    if args.workers is not None and args.workers < 1:
        raise PathcnnError(f"--workers: must be at least 1 (got {args.workers})")
    # A worker started by hand draws its own trials: its sampler seed mixes in the process id.
    worker_index = (args.worker_index if args.worker_index is not None else os.getpid()) if args.worker_only else None
    run(
        args.model,
        args.patches,
        args.split,
        args.out,
        args.journal,
        args.params,
        args.workers,
        worker_index,
    )
