"""Stage `nonsense`: the same CNN on classes that follow image identity, not tissue (the nonsense-label control).

Each nonsense class holds one image of each real class (A1+B1 against A2+B2), so its labels mean nothing
about tissue. Fitted on the task's 90:10 patch split, it shows what that metric gives to meaningless labels
(patches of one image are alike, so it can be high). Fitted leave-one-image-out, it is the floor a real
model's held-out accuracy must clear before it counts as evidence of tissue learning: image-level
similarities between the pairs can carry nonsense labels above chance on held-out images.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pathcnn.artifacts import write_csv, write_json
from pathcnn.console import say
from pathcnn.crossvalidation import (
    crossvalidate,
    fit_record,
    folds_or_reason,
    model_rows,
    seed_key,
    spread,
    spread_fields,
    tracked_fit,
)
from pathcnn.errors import PathcnnError
from pathcnn.evaluation import Evaluation
from pathcnn.params import effective_train_params, load_params
from pathcnn.patchsets import patch_set, read_manifest, read_split, split_sets
from pathcnn.splits import Fold, nonsense_classes
from pathcnn.stages.arguments import add_model_arguments

PREDICTION_COLUMNS = ["evaluation", "fold", "seed", "patch_id", "image_id", "label"]


def relabelled(frame: pd.DataFrame, classes: dict[str, str]) -> pd.DataFrame:
    """The frame with each patch's label replaced by its image's nonsense class."""
    return frame.assign(label=frame["image_id"].map(classes))


def patch_split_metrics(fits: dict[int, tuple[Evaluation, dict[str, Any]]]) -> dict[str, Any]:
    """Mean and spread over seeds of the patch-split fits, with each seed's record (as its MLflow run logs it)."""
    records = {seed_key(seed): evaluation.metrics for seed, (evaluation, _) in fits.items()}
    result: dict[str, Any] = {}
    for key in ("test_accuracy", "train_accuracy"):
        values = [record[key] for record in records.values()]
        result[key] = spread(values)["mean"]
        result.update(spread_fields(key, values))
    first = next(iter(records.values()))
    result["baseline_accuracy"] = first["baseline_accuracy"]
    result["n_test"] = first["n_test"]
    result["fits_failed"] = sum(record["fit"] == "failed" for record in records.values())
    result["seeds"] = {seed_key(seed): fit_record(evaluation, extra) for seed, (evaluation, extra) in fits.items()}
    return result


def run(
    model_name: str, patches_dir: Path, split_file: Path, tuned_file: Path | None, out_dir: Path, params_path: Path
) -> dict[str, Any]:
    """Fit the nonsense-label CNN on the patch split and leave-one-image-out, over crossval.seeds; write metrics."""
    from pathcnn import tracking

    params = load_params(params_path)
    real_classes = params.model(model_name).classes
    train, _ = effective_train_params(params, tuned_file)
    rows = model_rows(read_manifest(patches_dir), real_classes)
    try:
        classes = nonsense_classes(rows["label"].to_numpy(), rows["image_id"].to_numpy())
    except PathcnnError as error:
        reason = str(error)
        write_json(out_dir / "metrics.json", {"status": "not_possible", "reason": reason})
        write_csv(out_dir / "predictions.csv", pd.DataFrame(columns=PREDICTION_COLUMNS))
        say(f"nonsense {model_name}: not possible: {reason}")
        return {"status": "not_possible", "reason": reason}
    names = tuple(sorted(set(classes.values())))
    rows = relabelled(rows, classes)
    split = relabelled(read_split(split_file), classes)
    seeds = params.crossval.seed_list(params.base.seed)
    experiment = tracking.experiment_name(params.base.experiment_prefix, model_name)
    tags = {"model": model_name, "nonsense_classes": " vs ".join(names)}
    with tracking.tracked_run(experiment, f"nonsense-{model_name}", "nonsense", tags) as parent:
        tracking.log_params(
            {
                "train": train.model_dump(),
                "control_max_epochs": params.control.max_epochs,
                "crossval_max_epochs": params.crossval.max_epochs,
                "seeds": ",".join(map(str, seeds)),
            }
        )

        def fit(kind: str, sets: dict, seed: int, max_epochs: int, run_tags: dict[str, str]) -> tuple[Evaluation, dict]:
            run_tags = {**tags, **run_tags, "seed": str(seed)}
            run = (experiment, f"nonsense-{model_name}-{kind}-seed{seed}", "nonsense-fit", run_tags, parent.info.run_id)
            return tracked_fit(sets, names, train, seed, max_epochs, run)

        sets = split_sets(patches_dir, split, names)
        patch_fits = {
            seed: fit("patch", sets, seed, params.control.max_epochs, {"evaluation": "patch_split"}) for seed in seeds
        }
        frames = [
            evaluation.test_predictions.assign(evaluation="patch_split", fold="", seed=seed)
            for seed, (evaluation, _) in patch_fits.items()
        ]
        metrics: dict[str, Any] = {
            "status": "ok",
            "classes": {name: sorted(image for image, label in classes.items() if label == name) for name in names},
            "seeds": seeds,
            "patch_split": patch_split_metrics(patch_fits),
        }
        folds, reason = folds_or_reason(rows, names)
        if reason is None:
            full = patch_set(patches_dir, rows, names)

            def train_cnn(fold: Fold, masks: dict[str, np.ndarray], seed: int) -> tuple[Evaluation, dict]:
                fold_sets = {part: full.subset(mask) for part, mask in masks.items()}
                run_tags = {"evaluation": "held_out", "fold": fold.name, "test_images": ",".join(fold.test_images)}
                return fit(fold.name, fold_sets, seed, params.crossval.max_epochs, run_tags)

            held_out, predictions = crossvalidate(
                full, names, folds, params.split.val_fraction, params.base.seed, seeds, train_cnn, features=False
            )
            metrics["held_out"] = held_out
            frames.append(predictions.assign(evaluation="held_out"))
        else:
            metrics["held_out"] = {"status": "not_possible", "reason": reason}
        predictions = pd.concat(frames, ignore_index=True)
        ordered = PREDICTION_COLUMNS + [column for column in predictions.columns if column not in PREDICTION_COLUMNS]
        write_csv(out_dir / "predictions.csv", predictions[ordered])
        write_json(out_dir / "metrics.json", metrics)
        tracking.log_metrics_file(out_dir / "metrics.json")
    patch = metrics["patch_split"]
    held = metrics["held_out"]
    held_text = (
        f"held-out images {held['cnn_mean_accuracy']:.3f} (folds "
        + ", ".join(f"{fold['cnn_accuracy']:.3f}" for fold in held["folds"].values())
        + ")"
        if held.get("status") == "ok"
        else f"held-out images not possible: {held['reason']}"
    )
    say(
        f"nonsense {model_name} ({' vs '.join(names)}): patch split test {patch['test_accuracy']:.3f} "
        f"(majority {patch['baseline_accuracy']:.3f}), {held_text}, over {len(seeds)} seeds"
    )
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of the stage."""
    add_model_arguments(parser, tuned=True)


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    run(args.model, args.patches, args.split, args.tuned, args.out, args.params)
