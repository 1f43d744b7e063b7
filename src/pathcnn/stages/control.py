"""Stage `control`: the same CNN trained on shuffled labels (several permutations); it must land near chance."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pathcnn.artifacts import write_csv, write_json
from pathcnn.console import say
from pathcnn.metrics import image_level
from pathcnn.params import effective_train_params, load_params
from pathcnn.patchsets import PatchSet, read_split, split_sets
from pathcnn.stages.arguments import add_model_arguments
from pathcnn.stats import binomial_p_value, chance_rate

SIGNIFICANCE = 0.05


def permuted_sets(sets: Mapping[str, PatchSet], seed: int) -> dict[str, PatchSet]:
    """Training and validation labels shuffled (seeded), so neither fitting nor early stopping sees a signal.

    Test labels stay true: the control is scored against the real classes.
    """
    generator = np.random.default_rng(seed)
    result = dict(sets)
    for part in ("train", "val"):
        patch_set = sets[part]
        result[part] = PatchSet(patch_set.patches, generator.permutation(patch_set.labels), patch_set.frame)
    return result


def leak_suspected(
    test_accuracy: float, baseline_accuracy: float, class_count: int, margin: float, image_p_value: float = 0.0
) -> bool:
    """True when shuffled-label models beat chance by more than the margin, on significantly many images.

    Test patches cluster by image, and a model without signal still calls each image almost uniformly, so
    one model's patch accuracy moves in steps of whole images. The image-level p-value (one-sided
    binomial over every permutation's image calls) keeps such coin flips from raising the alarm.
    """
    above = test_accuracy > chance_rate(baseline_accuracy, class_count) + margin
    return above and image_p_value < SIGNIFICANCE


def control_metrics(
    runs: list[dict[str, Any]], predictions: pd.DataFrame, class_names: tuple[str, ...], margin: float
) -> dict[str, Any]:
    """Mean patch accuracy over the permutations, image calls pooled over them, and the leak verdict."""
    baseline = runs[0]["baseline_accuracy"]
    chance = chance_rate(baseline, len(class_names))
    # Each permutation's call of each image counts once: image ids are prefixed with the permutation.
    images = image_level(
        predictions.assign(image_id=predictions["permutation"] + "/" + predictions["image_id"]), class_names
    )
    correct, total = int(images["correct"].sum()), len(images)
    image_p = binomial_p_value(correct, total, 1.0 / len(class_names))
    accuracy = float(np.mean([run["test_accuracy"] for run in runs]))
    metrics: dict[str, Any] = {
        "test_accuracy": accuracy,
        "permutation_accuracies": {f"permutation{k + 1}": run["test_accuracy"] for k, run in enumerate(runs)},
        # Whether each shuffled-label model fitted its (shuffled) training labels beyond chance.
        "permutation_fits": {f"permutation{k + 1}": run.get("fit") for k, run in enumerate(runs)},
        "train_accuracy": float(np.mean([run["train_accuracy"] for run in runs])),
        "val_accuracy": float(np.mean([run.get("val_accuracy", np.nan) for run in runs])),
        "baseline_accuracy": baseline,
        "chance_accuracy": chance,
        "chance_margin": margin,
        "image_calls_correct": correct,
        "image_calls": total,
        "image_p_value": image_p,
        "n_test": runs[0]["n_test"],
    }
    metrics["leak_suspected"] = leak_suspected(accuracy, baseline, len(class_names), margin, image_p)
    return metrics


def run(
    model_name: str, patches_dir: Path, split_file: Path, tuned_file: Path | None, out_dir: Path, params_path: Path
) -> dict[str, Any]:
    """Train the shuffled-label CNNs of one model, log them and write metrics.json and predictions.csv."""
    from pathcnn import tracking
    from pathcnn.training import train_and_evaluate

    params = load_params(params_path)
    class_names = params.model(model_name).classes
    train, _ = effective_train_params(params, tuned_file)
    split = read_split(split_file)
    sets = split_sets(patches_dir, split, class_names)
    tags = {"model": model_name, "split_strategy": params.split.strategy.value}
    experiment = tracking.experiment_name(params.base.experiment_prefix, model_name)
    control = params.control
    with tracking.tracked_run(experiment, f"control-{model_name}", "control", tags):
        tracking.describe_experiment(experiment, model_name, class_names)
        tracking.log_split_inputs(split, split_file, model_name)
        tracking.log_params({"train": train.model_dump(), "control": control.model_dump(), "seed": params.base.seed})
        runs, frames = [], []
        for index in range(control.permutations):
            seed = params.base.seed + index
            outcome = train_and_evaluate(permuted_sets(sets, seed), class_names, train, seed, control.max_epochs)
            runs.append(outcome.evaluation.metrics)
            frames.append(outcome.evaluation.test_predictions.assign(permutation=f"permutation{index + 1}"))
        predictions = pd.concat(frames, ignore_index=True)
        metrics = control_metrics(runs, predictions, class_names, control.chance_margin)
        write_csv(out_dir / "predictions.csv", predictions)
        write_json(out_dir / "metrics.json", metrics)
        tracking.log_metrics_file(out_dir / "metrics.json")
    say(
        f"control {model_name}: {control.permutations} shuffled-label models give test "
        + ", ".join(f"{value:.3f}" for value in metrics["permutation_accuracies"].values())
        + f" (mean {metrics['test_accuracy']:.3f}, chance {metrics['chance_accuracy']:.3f}); "
        f"{metrics['image_calls_correct']} of {metrics['image_calls']} image calls right "
        f"(p = {metrics['image_p_value']:.2g})"
    )
    if metrics["leak_suspected"]:
        say(
            f"WARNING control {model_name}: models trained on shuffled labels score {metrics['test_accuracy']:.3f}, "
            f"more than {control.chance_margin:.2f} above chance ({metrics['chance_accuracy']:.3f}), and are right "
            f"on significantly many images: the evaluation is leaking; check the split"
        )
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of the stage."""
    add_model_arguments(parser, tuned=True)


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    run(
        args.model,
        args.patches,
        args.split,
        args.tuned,
        args.out,
        args.params,
    )
