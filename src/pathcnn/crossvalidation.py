"""Leave-one-image-out cross-validation: folds, the feature baseline and repeated CNN fits per fold, summarised.

Used by the crossval stage (the real classes) and the nonsense stage (classes that follow image identity).
The fold split (which patches train, validate and test) is seeded once; the CNN is fitted once per seed on
it, so the seed-to-seed range of a fold is the training noise a difference between figures must exceed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pathcnn.console import say
from pathcnn.errors import PathcnnError
from pathcnn.evaluation import Evaluation
from pathcnn.features import fit_and_evaluate, patch_features
from pathcnn.params import TrainParams
from pathcnn.patchsets import PatchSet
from pathcnn.splits import Fold, fold_split, image_folds

METHODS = ("cnn", "features")
PREDICTION_COLUMNS = ["fold", "method", "seed", "patch_id", "image_id", "label"]
# Per-fold keys copied from an Evaluation's metrics, prefixed with the method (the CNN's: mean over seeds).
FOLD_KEYS = {
    "test_accuracy": "accuracy",
    "test_balanced_accuracy": "balanced_accuracy",
    "test_image_accuracy": "image_accuracy",
    "train_accuracy": "train_accuracy",
    "val_accuracy": "val_accuracy",
    "fit": "fit",  # 'failed' when train accuracy lies within chance: the fold's figure means nothing
    "fit_chance_upper": "fit_chance_upper",
}
# The CNN figures whose spread over seeds each fold reports (min, max and range beside the mean).
SPREAD_KEYS = ("accuracy", "train_accuracy")

# Trains and scores the CNN of one fold with one seed, given boolean masks of the train, val and test patches;
# returns the evaluation and extra per-fit numbers (epochs run).
FoldTrainer = Callable[[Fold, dict[str, np.ndarray], int], tuple[Evaluation, dict[str, Any]]]


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


def seed_key(seed: int) -> str:
    """The name of one seed's record: seed42."""
    return f"seed{seed}"


def fit_record(evaluation: Evaluation, extra: dict[str, Any]) -> dict[str, Any]:
    """One CNN fit's figures, named as in the fold's record (cnn_accuracy, cnn_fit, ...)."""
    record = {f"cnn_{target}": evaluation.metrics.get(source) for source, target in FOLD_KEYS.items()}
    return {**record, **{f"cnn_{key}": value for key, value in extra.items()}}


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, min, max and range (max - min) of repeated figures."""
    array = np.asarray(values, dtype=float)
    low, high = float(array.min()), float(array.max())
    return {"mean": float(array.mean()), "min": low, "max": high, "range": high - low}


def spread_fields(name: str, values: Sequence[float]) -> dict[str, float]:
    """<name>_min, <name>_max and <name>_range of one figure repeated over seeds."""
    stats = spread(values)
    return {f"{name}_{stat}": stats[stat] for stat in ("min", "max", "range")}


def tracked_fit(
    sets: dict[str, PatchSet],
    class_names: tuple[str, ...],
    train: TrainParams,
    seed: int,
    max_epochs: int,
    run: tuple[str, str, str, dict[str, str], str],
) -> tuple[Evaluation, dict[str, Any]]:
    """One CNN fit of a fold or a control, in its own nested MLflow run: curves, fit_record and the fit tag.

    `run` is (experiment, run name, kind, tags, parent run id). Returns the evaluation and the extra numbers
    (epochs run) that, with it, make the fit's record: the run logs exactly fit_record(evaluation, extra).
    """
    from pathcnn import tracking
    from pathcnn.training import train_and_evaluate

    experiment, name, kind, tags, parent_id = run
    with tracking.tracked_run(experiment, name, kind, tags, parent_id):
        outcome = train_and_evaluate(sets, class_names, train, seed, max_epochs)
        tracking.log_history(outcome.history)
        extra = {"epochs": outcome.epochs_run}
        tracking.log_metrics(fit_record(outcome.evaluation, extra))
        tracking.set_tags({"fit": outcome.evaluation.metrics["fit"]})
    return outcome.evaluation, extra


def fold_metrics(
    fold: Fold, fits: dict[int, tuple[Evaluation, dict[str, Any]]], features: Evaluation | None
) -> dict[str, Any]:
    """Flat per-fold numbers: the CNN's mean over seeds (with spread), the features' and the majority baseline.

    `fits` maps each seed to its evaluation and extra numbers. cnn_fit is 'failed' when any seed's fit failed;
    the per-seed records sit under seeds.<seedN>.
    """
    first = next(iter(fits.values()))[0]
    result: dict[str, Any] = {
        "test_images": ",".join(fold.test_images),
        "n_test": first.metrics["n_test"],
        "baseline_accuracy": first.metrics["baseline_accuracy"],
    }
    records = {seed_key(seed): fit_record(evaluation, extra) for seed, (evaluation, extra) in fits.items()}
    for name in records[seed_key(next(iter(fits)))]:
        values = [record[name] for record in records.values()]
        if name == "cnn_fit":
            result[name] = "failed" if "failed" in values else "ok"
        elif all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
            result[name] = float(np.mean(values))
        else:
            result[name] = values[0]
    for key in SPREAD_KEYS:
        result.update(spread_fields(f"cnn_{key}", [record[f"cnn_{key}"] for record in records.values()]))
    result["cnn_fits_failed"] = sum(record["cnn_fit"] == "failed" for record in records.values())
    if features is not None:
        for source, target in FOLD_KEYS.items():
            result[f"features_{target}"] = features.metrics.get(source)
    result["seeds"] = records
    return result


def seed_means(folds: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Each seed's CNN accuracy averaged over the folds (seeds fitted on every fold only), by seed key."""
    common = set.intersection(*(set(fold["seeds"]) for fold in folds.values())) if folds else set()
    ordered = [key for key in next(iter(folds.values()))["seeds"] if key in common] if common else []
    return {key: float(np.mean([fold["seeds"][key]["cnn_accuracy"] for fold in folds.values()])) for key in ordered}


def summarise(folds: dict[str, dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Mean and worst fold per method, the seed spreads, the unfitted fits and the mean majority baseline.

    Two spreads: cnn_max_seed_range, the largest seed-to-seed range of one fold; cnn_mean_seed_range, how far
    the mean over folds moves from seed to seed (max - min of cnn_seed_mean_accuracy, 0.0 with one seed), the
    noise of the figure that is compared with other means.
    """
    summary: dict[str, Any] = {"status": "ok", "n_folds": len(folds), "seeds": list(seeds), "folds": folds}
    summary["mean_baseline_accuracy"] = float(np.mean([fold["baseline_accuracy"] for fold in folds.values()]))
    for method in METHODS:
        for key in ("accuracy", "balanced_accuracy", "image_accuracy"):
            values = [fold[f"{method}_{key}"] for fold in folds.values() if fold.get(f"{method}_{key}") is not None]
            summary[f"{method}_mean_{key}"] = float(np.mean(values)) if values else None
        values = [fold[f"{method}_accuracy"] for fold in folds.values() if fold.get(f"{method}_accuracy") is not None]
        summary[f"{method}_min_accuracy"] = float(min(values)) if values else None
    summary["cnn_max_seed_range"] = float(max(fold["cnn_accuracy_range"] for fold in folds.values()))
    summary["cnn_seed_mean_accuracy"] = means = seed_means(folds)
    summary["cnn_mean_seed_range"] = float(max(means.values()) - min(means.values())) if means else 0.0
    summary["cnn_folds_not_fitted"] = [
        f"{name}/{seed}"
        for name, fold in folds.items()
        for seed, record in fold["seeds"].items()
        if record["cnn_fit"] == "failed"
    ]
    return summary


def crossvalidate(
    full: PatchSet,
    class_names: tuple[str, ...],
    folds: list[Fold],
    val_fraction: float,
    split_seed: int,
    seeds: Sequence[int],
    train_cnn: FoldTrainer,
    features: bool = True,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Run every fold: features + logistic regression once, the CNN once per seed; metrics and predictions."""
    labels, image_ids = full.frame["label"].to_numpy(), full.frame["image_id"].to_numpy()
    feature_rows = patch_features(full.patches) if features else None
    per_fold: dict[str, dict[str, Any]] = {}
    frames = []
    for fold in folds:
        assignment = fold_split(labels, image_ids, fold, val_fraction, split_seed)
        masks = {part: assignment == part for part in ("train", "val", "test")}
        feature_evaluation = None
        if feature_rows is not None:
            sets = {part: full.subset(mask) for part, mask in masks.items()}
            feature_evaluation = fit_and_evaluate(
                {part: feature_rows[mask] for part, mask in masks.items()}, sets, class_names, split_seed
            )
            frames.append(
                feature_evaluation.test_predictions.assign(fold=fold.name, method="features", seed=split_seed)
            )
        fits = {seed: train_cnn(fold, masks, seed) for seed in seeds}
        for seed, (evaluation, _) in fits.items():
            frames.append(evaluation.test_predictions.assign(fold=fold.name, method="cnn", seed=seed))
        per_fold[fold.name] = record = fold_metrics(fold, fits, feature_evaluation)
        features_text = f", features {record['features_accuracy']:.3f}" if feature_evaluation is not None else ""
        say(
            f"crossval fold {fold.name} (test {', '.join(fold.test_images)}): CNN {record['cnn_accuracy']:.3f} "
            f"(seeds {record['cnn_accuracy_min']:.3f}-{record['cnn_accuracy_max']:.3f}){features_text}, "
            f"majority {record['baseline_accuracy']:.3f}"
        )
    predictions = pd.concat(frames, ignore_index=True)
    ordered = PREDICTION_COLUMNS + [column for column in predictions.columns if column not in PREDICTION_COLUMNS]
    return summarise(per_fold, seeds), predictions[ordered]
