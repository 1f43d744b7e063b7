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
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from pathcnn import studies
from pathcnn.artifacts import write_csv, write_json
from pathcnn.console import say
from pathcnn.errors import PathcnnError
from pathcnn.figures import save_figure
from pathcnn.params import Params, TuneParams, load_params
from pathcnn.patchsets import patch_set, read_split, split_sets
from pathcnn.stages.arguments import add_model_arguments
from pathcnn.trials import TuneContext, make_objective

OUTPUTS = ("best_params.json", "trials.csv", "history.png", "importance.png")


def direction_word(tune: TuneParams) -> str:
    """'minimise' or 'maximise', for the study's description."""
    return "minimise" if studies.direction(tune.objective) == "minimize" else "maximise"


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
        return studies.work(study, make_objective(context), tune.n_trials, grace)

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
