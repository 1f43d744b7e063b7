"""Stage `train`: fit the final CNN of one model on its train split and evaluate it once on the test split."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pathcnn.appearance import training_reference
from pathcnn.artifacts import save_keras_model, write_csv, write_json
from pathcnn.console import say
from pathcnn.evaluation import confusion_matrix_of
from pathcnn.figures import confusion_figure, history_figure, save_figure
from pathcnn.params import Params, effective_train_params, load_params
from pathcnn.patchsets import read_manifest, read_split, split_sets
from pathcnn.stages.arguments import add_model_arguments
from pathcnn.training import TrainOutcome, last_epochs_range, train_and_evaluate


def write_outputs(outcome: TrainOutcome, class_names: tuple[str, ...], out_dir: Path, title: str) -> dict[str, Path]:
    """metrics.json, history.csv, predictions.csv, confusion.csv and PNG figures."""
    metrics = {
        **outcome.evaluation.metrics,
        "epochs_run": outcome.epochs_run,
        "best_epoch": outcome.best_epoch,
        "val_accuracy_last5_range": last_epochs_range(outcome.history.get("val_accuracy", [])),
    }
    history = pd.DataFrame(outcome.history)
    history.insert(0, "epoch", range(1, len(history) + 1))
    predictions = outcome.evaluation.test_predictions
    paths = {
        "metrics": out_dir / "metrics.json",
        "history": out_dir / "history.csv",
        "predictions": out_dir / "predictions.csv",
        "confusion": out_dir / "confusion.csv",
        "confusion_png": out_dir / "confusion.png",
        "history_png": out_dir / "history.png",
    }
    write_csv(paths["history"], history)
    write_csv(paths["predictions"], predictions)
    write_csv(paths["confusion"], predictions[["label", "predicted"]].rename(columns={"label": "actual"}))
    save_figure(
        confusion_figure(confusion_matrix_of(metrics, class_names), class_names, f"{title}: test"),
        paths["confusion_png"],
    )
    save_figure(history_figure(outcome.history, title), paths["history_png"])
    write_json(paths["metrics"], metrics)
    return paths


def run(
    model_name: str,
    patches_dir: Path,
    split_file: Path,
    tuned_file: Path | None,
    model_out: Path,
    out_dir: Path,
    params_path: Path,
) -> dict[str, Any]:
    """Train, evaluate, log to MLflow, save the model and write metrics."""
    from pathcnn import registry, tracking

    params: Params = load_params(params_path)
    class_names = params.model(model_name).classes
    train, tuned = effective_train_params(params, tuned_file)
    split = read_split(split_file)
    sets = split_sets(patches_dir, split, class_names)
    tags = {"model": model_name, "split_strategy": params.split.strategy.value}
    if tuned.get("study_name"):
        tags["optuna_study"] = tuned["study_name"]
    # Which train values came from the study: MLflow's train.* params are the values the fit used.
    tags["tuned_fields"] = ",".join(params.tuned_fields) if tuned else ""
    experiment = tracking.experiment_name(params.base.experiment_prefix, model_name)
    with tracking.tracked_run(experiment, f"train-{model_name}", "train", tags):
        tracking.describe_experiment(experiment, model_name, class_names)
        tracking.log_split_inputs(split, split_file, model_name)
        tracking.log_params(
            {
                "train": train.model_dump(),
                "split": params.split.model_dump(),
                "patches": params.patches.model_dump(),
                "seed": params.base.seed,
                "classes": ",".join(class_names),
            }
        )
        outcome = train_and_evaluate(sets, class_names, train, params.base.seed, callbacks=(tracking.epoch_logger(),))
        paths = write_outputs(outcome, class_names, out_dir, model_name)
        metrics = outcome.evaluation.metrics
        tracking.log_metrics_file(paths["metrics"])
        tracking.set_tags({"fit": metrics["fit"]})
        for key in ("confusion_png", "history_png", "predictions"):
            tracking.log_artifact(paths[key])
        save_keras_model(outcome.model, model_out)
        stats_path = out_dir / registry.TRAINING_STATS  # what predict compares new images with
        reference = training_reference(
            sets["train"].patches, read_manifest(patches_dir), sets["train"].frame["image_id"]
        )
        stain = train.model_dump(mode="json").get("stain_normalization", "none")
        statistics = {**reference, "stain_normalization": stain}
        write_json(stats_path, statistics)
        tracking.log_artifact(stats_path)
        contract = input_contract(params, train, class_names)
        # Beside the model file: what predict needs to use it from any folder, without params.yaml.
        card = {
            "model": model_name,
            "classes": list(class_names),
            "patches": params.patches.model_dump(mode="json"),
            "stain_normalization": stain,
            "input_contract": contract,
            "training_stats": statistics,
        }
        card_path = model_out.with_suffix(".json")
        write_json(card_path, card)
        tracking.log_artifact(card_path)
        registered = registry.registered_name(params.base.experiment_prefix, model_name)
        info = tracking.log_keras_model(outcome.model, np.asarray(sets["test"].patches[:2]), registered, contract)
        decision = registry.promote_if_better(
            registered, info.registered_model_version, metrics, experiment=tracking.temporary_experiment()
        )
    say(
        f"train {model_name}: train {metrics['train_accuracy']:.3f}, val {metrics['val_accuracy']:.3f}, "
        f"test {metrics['test_accuracy']:.3f} (majority baseline {metrics['baseline_accuracy']:.3f}), "
        f"{outcome.epochs_run} epochs"
    )
    say(decision.summary())
    return metrics


def input_contract(params: Params, train: Any, class_names: tuple[str, ...]) -> str:
    """What the logged model takes and returns, for its MLflow description."""
    size = params.patches.patch_size
    stain = train.model_dump(mode="json").get("stain_normalization", "none")
    text = (
        f"Input: uint8 RGB patches of shape (N, {size}, {size}, 3), values 0-255, as the patches stage stores "
        "them; do not scale them to 0-1 (the model rescales itself). "
        f"Output: the probabilities of the classes {', '.join(class_names)}, in that order. "
    )
    if stain != "none":
        text += f"The model was trained on {stain}-normalised patches: apply it first, as pathcnn predict does. "
    return text + "pathcnn predict --model-uri tiles whole images, checks their appearance and draws heatmaps."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of the stage."""
    add_model_arguments(parser, tuned=True)
    parser.add_argument("--model-out", type=Path, required=True, help="the model file to write (models/<model>.keras)")


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    run(
        args.model,
        args.patches,
        args.split,
        args.tuned,
        args.model_out,
        args.out,
        args.params,
    )
