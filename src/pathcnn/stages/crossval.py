"""Stage `crossval`: leave-one-image-out per class, for the CNN and the feature baseline side by side.

Run twice per model by dvc.yaml: with the study's best params (`crossval@<model>`) and, with --untuned,
with the tune.space start values (`crossval-untuned@<model>`). When the study chose its values on held-out
images of the train split (tune.objective held_out_*), the tuned figure is optimistic: those images are the
folds' test images. The untuned figure involves no choice made on them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pathcnn.artifacts import write_csv, write_json
from pathcnn.console import say
from pathcnn.crossvalidation import PREDICTION_COLUMNS, crossvalidate, folds_or_reason, model_rows, tracked_fit
from pathcnn.errors import PathcnnError
from pathcnn.evaluation import Evaluation
from pathcnn.params import Params, TrainParams, effective_train_params, load_params
from pathcnn.patchsets import PatchSet, patch_set, read_manifest
from pathcnn.splits import Fold
from pathcnn.stages.arguments import add_model_arguments
from pathcnn.stain import normalize_by_image


def stage_name(untuned: bool) -> str:
    """The dvc.yaml stage (and MLflow run kind, results folder): crossval, or crossval-untuned."""
    return "crossval-untuned" if untuned else "crossval"


def run(
    model_name: str,
    patches_dir: Path,
    tuned_file: Path | None,
    out_dir: Path,
    params_path: Path,
    untuned: bool = False,
) -> dict[str, Any]:
    """Cross-validate one model by image, log a parent run with one child per fold and seed, write metrics.json.

    untuned: the `tuned` train fields take their tune.space start values (tuned_file is not read).
    """
    from pathcnn import tracking

    params: Params = load_params(params_path)
    class_names = params.model(model_name).classes
    train: TrainParams = params.train if untuned else effective_train_params(params, tuned_file)[0]
    name, train_params = stage_name(untuned), "untuned" if untuned else "tuned"
    rows = model_rows(read_manifest(patches_dir), class_names)
    folds, reason = folds_or_reason(rows, class_names)
    if reason is not None:
        write_json(out_dir / "metrics.json", {"status": "not_possible", "reason": reason})
        write_csv(out_dir / "predictions.csv", pd.DataFrame(columns=PREDICTION_COLUMNS))
        say(f"{name} {model_name}: not possible: {reason}")
        return {"status": "not_possible", "reason": reason}
    full = patch_set(patches_dir, rows, class_names)
    # The feature baseline sees the same colour preprocessing as the CNN (train_and_evaluate applies its own).
    normalized = PatchSet(
        normalize_by_image(full.patches, full.frame["image_id"].to_numpy(), train.stain_normalization),
        full.labels,
        full.frame,
    )
    experiment = tracking.experiment_name(params.base.experiment_prefix, model_name)
    tags = {"model": model_name, "split_strategy": "image", "train_params": train_params}
    with tracking.tracked_run(experiment, f"{name}-{model_name}", name, tags) as parent:
        parent_id = parent.info.run_id
        seeds = params.crossval.seed_list(params.base.seed)
        tracking.log_params(
            {"train": train.model_dump(), "max_epochs": params.crossval.max_epochs, "seeds": ",".join(map(str, seeds))}
        )

        def train_cnn(fold: Fold, masks: dict[str, np.ndarray], seed: int) -> tuple[Evaluation, dict[str, Any]]:
            raw_sets = {part: full.subset(mask) for part, mask in masks.items()}
            fold_tags = {**tags, "fold": fold.name, "test_images": ",".join(fold.test_images), "seed": str(seed)}
            # The run logs this fit's entry in metrics.json (folds.<fold>.seeds.seed<N>.cnn_*).
            run = (experiment, f"{name}-{model_name}-{fold.name}-seed{seed}", f"{name}-fold", fold_tags, parent_id)
            return tracked_fit(raw_sets, class_names, train, seed, params.crossval.max_epochs, run)

        metrics, predictions = crossvalidate(
            normalized, class_names, folds, params.split.val_fraction, params.base.seed, seeds, train_cnn
        )
        metrics["train_params"] = train_params
        write_csv(out_dir / "predictions.csv", predictions)
        write_json(out_dir / "metrics.json", metrics)
        tracking.log_metrics_file(out_dir / "metrics.json")
    say(
        f"{name} {model_name}: held-out images: CNN mean {metrics['cnn_mean_accuracy']:.3f} over "
        f"{len(metrics['seeds'])} seeds (largest seed range of a fold {metrics['cnn_max_seed_range']:.3f}), "
        f"features mean {metrics['features_mean_accuracy']:.3f}, majority {metrics['mean_baseline_accuracy']:.3f}"
    )
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of the stage."""
    add_model_arguments(parser, split=False, tuned=True)
    parser.add_argument(
        "--untuned",
        action="store_true",
        help="fit with the tune.space start values instead of --tuned (the crossval-untuned stage)",
    )


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    if args.untuned and args.tuned is not None:
        raise PathcnnError("--untuned and --tuned: give one (--untuned fits with the tune.space start values)")
    run(
        args.model,
        args.patches,
        args.tuned,
        args.out,
        args.params,
        args.untuned,
    )
