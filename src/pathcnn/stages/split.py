"""Stage `split`: per model, a seeded stratified train/validation/test split of the kept patches."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from pathcnn.artifacts import atomic_directory, write_csv, write_json
from pathcnn.console import say
from pathcnn.params import ModelSpec, SplitParams, SplitStrategy, load_params
from pathcnn.patchsets import read_manifest
from pathcnn.splits import split_images, split_patches
from pathcnn.stages.arguments import add_params_argument

COLUMNS = ["patch_id", "image_id", "label", "index", "split"]


def split_model(manifest: pd.DataFrame, spec: ModelSpec, params: SplitParams, seed: int) -> pd.DataFrame:
    """The kept patches of a model's classes, each assigned to train, val or test."""
    rows = manifest[manifest["kept"] & manifest["label"].isin(spec.classes)].reset_index(drop=True)
    labels = rows["label"].to_numpy()
    if params.strategy is SplitStrategy.image:
        assignment = split_images(labels, rows["image_id"].to_numpy(), params.test_fraction, params.val_fraction, seed)
    else:
        assignment = split_patches(labels, params.test_fraction, params.val_fraction, seed)
    return rows.assign(split=assignment)[COLUMNS]


def summary(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Patch counts per split and class."""
    counts = frame.groupby(["split", "label"]).size()
    return {split: {label: int(n) for label, n in counts[split].items()} for split in counts.index.levels[0]}


def run(patches_dir: Path, out_dir: Path, params_path: Path) -> dict[str, pd.DataFrame]:
    """Write <model>.csv per model and summary.json into out_dir."""
    params = load_params(params_path)
    manifest = read_manifest(patches_dir)
    splits = {name: split_model(manifest, spec, params.split, params.base.seed) for name, spec in params.models.items()}
    with atomic_directory(out_dir) as staging:
        for name, frame in splits.items():
            write_csv(staging / f"{name}.csv", frame)
        write_json(
            staging / "summary.json",
            {"strategy": params.split.strategy.value, "models": {name: summary(f) for name, f in splits.items()}},
        )
    for name, frame in splits.items():
        say(
            f"split {name} ({params.split.strategy.value}): "
            + ", ".join(f"{part} {int((frame['split'] == part).sum())}" for part in ("train", "val", "test"))
        )
    return splits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of the stage."""
    parser.add_argument("--patches", type=Path, required=True, help="the patches stage's folder (data/patches)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the split files (data/splits)")
    add_params_argument(parser)


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    run(args.patches, args.out, args.params)
