"""Stage `crossval`: leave-one-image-out per class, for the CNN and the feature baseline side by side."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pathcnn.artifacts import write_csv, write_json
from pathcnn.console import say
from pathcnn.errors import PathcnnError
from pathcnn.evaluation import Evaluation
from pathcnn.features import patch_features
from pathcnn.params import Params, TrainParams, load_params
from pathcnn.patchsets import PatchSet, patch_set, read_manifest
from pathcnn.splits import Fold, fold_split, image_folds
from pathcnn.stages.arguments import add_model_arguments, out_dir
from pathcnn.stages.baseline import fit_and_evaluate
from pathcnn.stain import normalize_by_image

METHODS = ("cnn", "features")
PREDICTION_COLUMNS = ["fold", "method", "patch_id", "image_id", "label"]
# Per-fold keys copied from an Evaluation's metrics, prefixed with the method.
FOLD_KEYS = {
    "test_accuracy": "accuracy",
    "test_balanced_accuracy": "balanced_accuracy",
    "test_image_accuracy": "image_accuracy",
    "train_accuracy": "train_accuracy",
    "val_accuracy": "val_accuracy",
    "fit": "fit",  # 'failed' when train accuracy lies within chance: the fold's figure means nothing
    "fit_chance_upper": "fit_chance_upper",
}

# Trains and scores the CNN of one fold, given boolean masks of the train, val and test patches.
FoldTrainer = Callable[[Fold, dict[str, np.ndarray]], tuple[Evaluation, dict[str, Any]]]


def model_rows(manifest: pd.DataFrame, class_names: tuple[str, ...]) -> pd.DataFrame:
    """The kept patches of a model's classes."""
    return manifest[manifest["kept"] & manifest["label"].isin(class_names)].reset_index(drop=True)


def folds_or_reason(rows: pd.DataFrame, class_names: tuple[str, ...]) -> tuple[list[Fold], str | None]:
    """The folds, or no folds and the one-line reason cross-validation is not possible."""
    missing = [name for name in class_names if not (rows["label"] == name).any()]
    if missing:
        return [], f"cannot cross-validate by image: class {', '.join(missing)} has no kept patches"
    try:
        return image_folds(rows["label"].to_numpy(), rows["image_id"].to_numpy()), None
    except PathcnnError as error:
        return [], str(error)


def fold_metrics(
    fold: Fold, cnn: Evaluation, features: Evaluation | None, extra: dict[str, Any]
) -> dict[str, Any]:
    """Flat per-fold numbers for both methods (the CNN's alone without features) beside the majority baseline."""
    result: dict[str, Any] = {
        "test_images": ",".join(fold.test_images),
        "n_test": cnn.metrics["n_test"],
        "baseline_accuracy": cnn.metrics["baseline_accuracy"],
    }
    for method, evaluation in zip(METHODS, (cnn, features), strict=True):
        if evaluation is not None:
            for source, target in FOLD_KEYS.items():
                result[f"{method}_{target}"] = evaluation.metrics.get(source)
    return {**result, **extra}


def summarise(folds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and worst fold per method, and the mean majority baseline."""
    summary: dict[str, Any] = {"status": "ok", "n_folds": len(folds), "folds": folds}
    summary["mean_baseline_accuracy"] = float(np.mean([fold["baseline_accuracy"] for fold in folds.values()]))
    for method in METHODS:
        for key in ("accuracy", "balanced_accuracy", "image_accuracy"):
            values = [fold[f"{method}_{key}"] for fold in folds.values() if fold[f"{method}_{key}"] is not None]
            summary[f"{method}_mean_{key}"] = float(np.mean(values)) if values else None
        summary[f"{method}_min_accuracy"] = float(min(fold[f"{method}_accuracy"] for fold in folds.values()))
    summary["cnn_folds_not_fitted"] = [name for name, fold in folds.items() if fold.get("cnn_fit") == "failed"]
    return summary


def crossvalidate(
    full: PatchSet,
    class_names: tuple[str, ...],
    folds: list[Fold],
    val_fraction: float,
    seed: int,
    train_cnn: FoldTrainer,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Run every fold: features + logistic regression, and the CNN through train_cnn; metrics and predictions."""
    labels, image_ids = full.frame["label"].to_numpy(), full.frame["image_id"].to_numpy()
    features = patch_features(full.patches)
    per_fold: dict[str, dict[str, Any]] = {}
    frames = []
    for fold in folds:
        assignment = fold_split(labels, image_ids, fold, val_fraction, seed)
        masks = {part: assignment == part for part in ("train", "val", "test")}
        sets = {part: full.subset(mask) for part, mask in masks.items()}
        feature_evaluation = fit_and_evaluate(
            {part: features[mask] for part, mask in masks.items()}, sets, class_names, seed
        )
        cnn_evaluation, extra = train_cnn(fold, masks)
        per_fold[fold.name] = fold_metrics(fold, cnn_evaluation, feature_evaluation, extra)
        for method, evaluation in zip(METHODS, (cnn_evaluation, feature_evaluation), strict=True):
            frames.append(evaluation.test_predictions.assign(fold=fold.name, method=method))
        say(
            f"crossval fold {fold.name} (test {', '.join(fold.test_images)}): "
            f"CNN {per_fold[fold.name]['cnn_accuracy']:.3f}, features {per_fold[fold.name]['features_accuracy']:.3f}, "
            f"majority {per_fold[fold.name]['baseline_accuracy']:.3f}"
        )
    predictions = pd.concat(frames, ignore_index=True)
    ordered = PREDICTION_COLUMNS + [column for column in predictions.columns if column not in PREDICTION_COLUMNS]
    return summarise(per_fold), predictions[ordered]


def run(
    model_name: str, patches_dir: Path, tuned_file: Path | None, out_dir: Path, params_path: Path
) -> dict[str, Any]:
    """Cross-validate one model by image, log a parent run with one child per fold, write metrics.json."""
    from pathcnn import tracking
    from pathcnn.stages.train import effective_train_params, train_and_evaluate

    params: Params = load_params(params_path)
    class_names = params.model(model_name).classes
    train: TrainParams = effective_train_params(params, tuned_file)[0]
    rows = model_rows(read_manifest(patches_dir), class_names)
    folds, reason = folds_or_reason(rows, class_names)
    if reason is not None:
        write_json(out_dir / "metrics.json", {"status": "not_possible", "reason": reason})
        write_csv(out_dir / "predictions.csv", pd.DataFrame(columns=PREDICTION_COLUMNS))
        say(f"crossval {model_name}: not possible: {reason}")
        return {"status": "not_possible", "reason": reason}
    full = patch_set(patches_dir, rows, class_names)
    # The feature baseline sees the same colour preprocessing as the CNN (train_and_evaluate applies its own).
    normalized = PatchSet(
        normalize_by_image(full.patches, full.frame["image_id"].to_numpy(), train.stain_normalization),
        full.labels,
        full.frame,
    )
    experiment = tracking.experiment_name(params.base.experiment_prefix, model_name)
    tags = {"model": model_name, "split_strategy": "image"}
    with tracking.tracked_run(experiment, f"crossval-{model_name}", "crossval", tags) as parent:
        tracking.log_params({"train": train.model_dump(), "max_epochs": params.crossval.max_epochs})

        def train_cnn(fold: Fold, masks: dict[str, np.ndarray]) -> tuple[Evaluation, dict[str, Any]]:
            raw_sets = {part: full.subset(mask) for part, mask in masks.items()}
            fold_tags = {**tags, "fold": fold.name, "test_images": ",".join(fold.test_images)}
            with tracking.tracked_run(
                experiment, f"crossval-{model_name}-{fold.name}", "crossval-fold", fold_tags, parent.info.run_id
            ):
                outcome = train_and_evaluate(raw_sets, class_names, train, params.base.seed, params.crossval.max_epochs)
                tracking.log_history(outcome.history)
                extra = {"cnn_epochs": outcome.epochs_run}
                # The names and values of this fold's entry in metrics.json (folds.<fold>.cnn_*).
                tracking.log_metrics({**fold_metrics(fold, outcome.evaluation, None, extra), **extra})
                tracking.set_tags({"fit": outcome.evaluation.metrics["fit"]})
            return outcome.evaluation, extra

        metrics, predictions = crossvalidate(
            normalized, class_names, folds, params.split.val_fraction, params.base.seed, train_cnn
        )
        write_csv(out_dir / "predictions.csv", predictions)
        write_json(out_dir / "metrics.json", metrics)
        tracking.log_metrics_file(out_dir / "metrics.json")
    say(
        f"crossval {model_name}: held-out images: CNN mean {metrics['cnn_mean_accuracy']:.3f}, "
        f"features mean {metrics['features_mean_accuracy']:.3f}, majority {metrics['mean_baseline_accuracy']:.3f}"
    )
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of the stage."""
    add_model_arguments(parser, "crossval", split=False, tuned=True)


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    run(
        args.model,
        args.patches,
        args.tuned,
        out_dir(args, "crossval"),
        args.params,
    )
