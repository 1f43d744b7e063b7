"""One Optuna trial of the tune stage: fit the train stage's CNN with the trial's values, report each epoch to
the pruner, score it, and log it as a nested MLflow run.

Trials fit through training.train_and_evaluate on the train split, judged on the validation split
(tune.objective val_*) or on images left out of the train split one per class (held_out_*, one fit per fold).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from pathcnn import studies
from pathcnn.console import say
from pathcnn.params import Objective, Params, TrainParams
from pathcnn.patchsets import PatchSet


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
