"""Stage `control`: the same CNN trained on shuffled labels; its test accuracy must land near chance."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pathcnn.artifacts import write_csv, write_json
from pathcnn.console import say
from pathcnn.params import load_params
from pathcnn.patchsets import PatchSet, read_split, split_sets


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


def chance_rate(baseline_accuracy: float, class_count: int) -> float:
    """What a model without signal is expected to score: the majority rate or 1/K, whichever is higher."""
    return max(baseline_accuracy, 1.0 / class_count)


def leak_suspected(test_accuracy: float, baseline_accuracy: float, class_count: int, margin: float) -> bool:
    """True when the shuffled-label model beats chance by more than the margin: the evaluation leaks."""
    return test_accuracy > chance_rate(baseline_accuracy, class_count) + margin


def run(
    model_name: str, patches_dir: Path, split_file: Path, tuned_file: Path | None, out_dir: Path, params_path: Path
) -> dict[str, Any]:
    """Train the shuffled-label CNN of one model, log it and write metrics.json and predictions.csv."""
    from pathcnn import tracking
    from pathcnn.stages.train import effective_train_params, train_and_evaluate

    params = load_params(params_path)
    class_names = params.model(model_name).classes
    train, _ = effective_train_params(params.train, tuned_file)
    sets = permuted_sets(split_sets(patches_dir, read_split(split_file), class_names), params.base.seed)
    tags = {"model": model_name, "split_strategy": params.split.strategy.value}
    experiment = tracking.experiment_name(params.base.experiment_prefix, model_name)
    with tracking.tracked_run(experiment, f"control-{model_name}", "control", tags):
        tracking.log_params(
            {"train": train.model_dump(), "max_epochs": params.control.max_epochs, "seed": params.base.seed}
        )
        outcome = train_and_evaluate(sets, class_names, train, params.base.seed, params.control.max_epochs)
        tracking.log_history(outcome.history)
        evaluation = outcome.evaluation.metrics
        metrics = {
            key: evaluation[key]
            for key in ("train_accuracy", "val_accuracy", "test_accuracy", "test_balanced_accuracy", "n_test")
            if key in evaluation
        }
        metrics["baseline_accuracy"] = evaluation["baseline_accuracy"]
        metrics["chance_accuracy"] = chance_rate(evaluation["baseline_accuracy"], len(class_names))
        metrics["chance_margin"] = params.control.chance_margin
        metrics["leak_suspected"] = leak_suspected(
            evaluation["test_accuracy"], evaluation["baseline_accuracy"], len(class_names), params.control.chance_margin
        )
        metrics["epochs_run"] = outcome.epochs_run
        write_csv(out_dir / "predictions.csv", outcome.evaluation.test_predictions)
        write_json(out_dir / "metrics.json", metrics)
        tracking.log_metrics({**metrics, "leak_suspected": float(metrics["leak_suspected"])})
        tracking.log_artifact(out_dir / "metrics.json")
    say(
        f"control {model_name}: shuffled labels give test {metrics['test_accuracy']:.3f} "
        f"(chance {metrics['chance_accuracy']:.3f})"
    )
    if metrics["leak_suspected"]:
        say(
            f"WARNING control {model_name}: a model trained on shuffled labels scores "
            f"{metrics['test_accuracy']:.3f}, more than {params.control.chance_margin:.2f} above chance "
            f"({metrics['chance_accuracy']:.3f}): the evaluation is leaking; check the split"
        )
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of the stage."""
    parser.add_argument("--model", required=True, help="model name from params.yaml (e.g. model1)")
    parser.add_argument("--patches", type=Path, default=Path("data/patches"))
    parser.add_argument("--split", type=Path, help="split file (default data/splits/<model>.csv)")
    parser.add_argument("--tuned", type=Path, help="best_params.json of the tune stage (optional)")
    parser.add_argument("--out", type=Path, help="metrics folder (default results/control/<model>)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    run(
        args.model,
        args.patches,
        args.split or Path(f"data/splits/{args.model}.csv"),
        args.tuned,
        args.out or Path(f"results/control/{args.model}"),
        args.params,
    )
