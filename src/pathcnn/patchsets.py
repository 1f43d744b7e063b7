"""Stored patches: the manifest, the per-model split files and the arrays they point into."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pathcnn.errors import PathcnnError

MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class PatchSet:
    """Patches of one split part with integer labels."""

    patches: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) int64, index into class_names
    frame: pd.DataFrame  # patch_id, image_id, label, index rows in the same order

    def __len__(self) -> int:
        return len(self.labels)


def read_manifest(patches_dir: Path) -> pd.DataFrame:
    """The manifest written by the patches stage."""
    path = Path(patches_dir) / MANIFEST
    if not path.exists():
        raise PathcnnError(f"{path}: missing; run the patches stage first (dvc repro patches)")
    return pd.read_csv(path)


def read_split(split_file: Path) -> pd.DataFrame:
    """A split file written by the split stage."""
    path = Path(split_file)
    if not path.exists():
        raise PathcnnError(f"{path}: missing; run the split stage first (dvc repro split)")
    return pd.read_csv(path)


def load_patches(patches_dir: Path, frame: pd.DataFrame) -> np.ndarray:
    """Gather the patches a frame lists (image_id, index) from the memory-mapped per-image arrays."""
    if frame.empty:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    parts: list[np.ndarray] = []
    order: list[np.ndarray] = []
    for image_id, rows in frame.groupby("image_id", sort=False):
        source = np.load(Path(patches_dir) / f"{image_id}.npy", mmap_mode="r")
        parts.append(np.asarray(source[rows["index"].to_numpy()]))
        order.append(np.flatnonzero(frame["image_id"].to_numpy() == image_id))
    gathered = np.empty((len(frame), *parts[0].shape[1:]), dtype=np.uint8)
    for positions, part in zip(order, parts, strict=True):
        gathered[positions] = part
    return gathered


def patch_set(patches_dir: Path, frame: pd.DataFrame, class_names: tuple[str, ...]) -> PatchSet:
    """A PatchSet from the rows of a split frame."""
    frame = frame.reset_index(drop=True)
    lookup = {name: index for index, name in enumerate(class_names)}
    labels = frame["label"].map(lookup).to_numpy(dtype=np.int64)
    return PatchSet(patches=load_patches(patches_dir, frame), labels=labels, frame=frame)


def split_sets(patches_dir: Path, split: pd.DataFrame, class_names: tuple[str, ...]) -> dict[str, PatchSet]:
    """train, val and test PatchSets of one split file."""
    return {
        part: patch_set(patches_dir, split[split["split"] == part], class_names) for part in ("train", "val", "test")
    }
