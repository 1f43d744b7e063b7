"""Stage `baseline`: colour and texture features with a logistic regression, on exactly the CNN's split."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pathcnn.artifacts import write_csv, write_json
from pathcnn.console import say
from pathcnn.features import FEATURE_NAMES, fit_and_evaluate, set_features
from pathcnn.params import load_params
from pathcnn.patchsets import read_split, split_sets
from pathcnn.stages.arguments import add_model_arguments
from pathcnn.stain import normalize_sets


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
    add_model_arguments(parser)


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    run(
        args.model,
        args.patches,
        args.split,
        args.out,
        args.params,
    )
