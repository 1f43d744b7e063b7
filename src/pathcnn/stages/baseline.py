"""Stage `baseline`: colour and texture features with a logistic regression, on exactly the CNN's split."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pathcnn.artifacts import write_csv, write_json
from pathcnn.console import say
from pathcnn.evaluation import Evaluation, evaluate_probabilities
from pathcnn.features import FEATURE_NAMES, fit_feature_classifier, patch_features, predict_feature_classifier
from pathcnn.params import load_params
from pathcnn.patchsets import PatchSet, read_split, split_sets
from pathcnn.stages.arguments import add_model_arguments, out_dir, split_file
from pathcnn.stain import normalize_sets


def set_features(sets: Mapping[str, PatchSet]) -> dict[str, np.ndarray]:
    """Feature rows of every part (an empty part gets an empty matrix)."""
    return {
        part: patch_features(patch_set.patches) if len(patch_set) else np.zeros((0, len(FEATURE_NAMES)), np.float32)
        for part, patch_set in sets.items()
    }


def fit_and_evaluate(
    features: Mapping[str, np.ndarray], sets: Mapping[str, PatchSet], class_names: tuple[str, ...], seed: int
) -> Evaluation:
    """Fit the feature classifier on the training part and score every part like the CNN."""
    classifier = fit_feature_classifier(features["train"], sets["train"].labels, seed)
    probabilities = {
        part: predict_feature_classifier(classifier, rows, len(class_names)) for part, rows in features.items()
    }
    return evaluate_probabilities(probabilities, sets, class_names)


def run(model_name: str, patches_dir: Path, split_file: Path, out_dir: Path, params_path: Path) -> dict[str, Any]:
    """Fit the baseline of one model, log it to MLflow and write metrics.json and predictions.csv."""
    from pathcnn import tracking

    params = load_params(params_path)
    class_names = params.model(model_name).classes
    stain = params.train.stain_normalization
    split = read_split(split_file)
    sets = normalize_sets(split_sets(patches_dir, split, class_names), stain)
    tags = {"model": model_name, "split_strategy": params.split.strategy.value}
    experiment = tracking.experiment_name(params.base.experiment_prefix, model_name)
    with tracking.tracked_run(experiment, f"baseline-{model_name}", "baseline", tags):
        tracking.describe_experiment(experiment, model_name, class_names)
        tracking.log_split_inputs(split, split_file, model_name)
        tracking.log_params(
            {
                "classifier": "logistic_regression",
                "features": len(FEATURE_NAMES),
                "stain_normalization": stain.value,
                "split": params.split.model_dump(),
                "seed": params.base.seed,
                "classes": ",".join(class_names),
            }
        )
        evaluation = fit_and_evaluate(set_features(sets), sets, class_names, params.base.seed)
        metrics = {**evaluation.metrics, "features": len(FEATURE_NAMES)}
        write_csv(out_dir / "predictions.csv", evaluation.test_predictions)
        write_json(out_dir / "metrics.json", metrics)
        tracking.log_metrics_file(out_dir / "metrics.json")
        tracking.log_artifact(out_dir / "predictions.csv")
    say(
        f"baseline {model_name}: features + logistic regression: train {metrics['train_accuracy']:.3f}, "
        f"test {metrics['test_accuracy']:.3f} (majority baseline {metrics['baseline_accuracy']:.3f})"
    )
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of the stage."""
    add_model_arguments(parser, "baseline")


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    run(
        args.model,
        args.patches,
        split_file(args),
        out_dir(args, "baseline"),
        args.params,
    )
