"""Stored patches: the manifest, the per-model split files and the arrays they point into.

A split part is a `PatchArray`: a list of (image, row) pairs over the per-image `.npy` files the patches
stage wrote. Rows are read on demand, a batch at a time, with positional reads at offsets computed from
the `.npy` header, so a process holds one batch rather than the dataset. Not `np.load(mmap_mode="r")`:
every page of a memory map that has been read counts in the process's resident memory until it is
unmapped, so an epoch over a mapped dataset grows the process by the dataset's size; pages read with
`os.pread` live in the kernel's page cache, which it can drop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pathcnn.errors import PathcnnError

MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class NpyLayout:
    """Where the rows of one uint8 `.npy` file start and how big each is."""

    path: Path
    offset: int
    rows: int
    row_shape: tuple[int, ...]

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape))


def read_layout(path: Path) -> NpyLayout:
    """The header of a C-ordered uint8 `.npy` file: data offset, row count and row shape."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = reader(handle)
            offset = handle.tell()
    except FileNotFoundError:
        raise PathcnnError(f"{path}: missing; run the patches stage first (dvc repro patches)") from None
    except ValueError as error:
        raise PathcnnError(
            f"{path}: not a patch array ({error}); re-run the patches stage (dvc repro patches)"
        ) from error
    if dtype != np.uint8 or fortran_order or len(shape) != 4:
        raise PathcnnError(
            f"{path}: expected C-ordered uint8 patches (N, H, W, 3), found {dtype} {shape}; "
            "re-run the patches stage (dvc repro patches)"
        )
    return NpyLayout(Path(path), offset, int(shape[0]), tuple(int(side) for side in shape[1:]))


@dataclass(frozen=True, eq=False)
class PatchArray:
    """Patches (N, S, S, 3) uint8 listed by (file, row), read from disk only when indexed.

    Indexing (`array[5]`, `array[2:10]`, `array[positions]`, `array[mask]`) reads those rows into a new
    NumPy array, as NumPy indexing would copy them; `subset` gives a smaller PatchArray without reading.
    """

    layouts: tuple[NpyLayout, ...]
    file_of_row: np.ndarray  # (N,) index into layouts
    row_in_file: np.ndarray  # (N,) row inside that file
    dtype = np.dtype(np.uint8)
    ndim = 4

    @property
    def shape(self) -> tuple[int, ...]:
        row_shape = self.layouts[0].row_shape if self.layouts else (0, 0, 3)
        return (len(self.file_of_row), *row_shape)

    def __len__(self) -> int:
        return len(self.file_of_row)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.subset([key]).read()[0]
        return self.subset(key).read()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        everything = self.read()
        return everything if dtype is None else everything.astype(dtype)

    def subset(self, key: Any) -> PatchArray:
        """The rows selected by a mask, positions or a slice (NumPy's indexing rules), still on disk."""
        return PatchArray(self.layouts, self.file_of_row[key], self.row_in_file[key])

    def read(self) -> np.ndarray:
        """Every row, in order, as one array."""
        result = np.empty(self.shape, dtype=np.uint8)
        if not len(self):
            return result
        flat = result.reshape(len(self), -1)
        files, rows = self.file_of_row, self.row_in_file
        for file_index in np.unique(files):
            layout = self.layouts[file_index]
            size = layout.row_bytes
            descriptor = os.open(layout.path, os.O_RDONLY)
            try:
                for target in np.flatnonzero(files == file_index):
                    data = os.pread(descriptor, size, layout.offset + int(rows[target]) * size)
                    if len(data) != size:
                        raise PathcnnError(
                            f"{layout.path}: shorter than its header says (row {rows[target]}); "
                            "re-run the patches stage (dvc repro patches)"
                        )
                    flat[target] = np.frombuffer(data, dtype=np.uint8)
            finally:
                os.close(descriptor)
        return result


@dataclass(frozen=True)
class PatchSet:
    """Patches of one split part with integer labels."""

    patches: PatchArray | np.ndarray  # (N, S, S, 3) uint8; on disk, or in memory after stain normalisation
    labels: np.ndarray  # (N,) int64, index into class_names
    frame: pd.DataFrame  # patch_id, image_id, label, index rows in the same order

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> PatchSet:
        """The patches where mask is true, without reading them."""
        patches = self.patches.subset(mask) if isinstance(self.patches, PatchArray) else self.patches[mask]
        return PatchSet(patches, self.labels[mask], self.frame[mask].reset_index(drop=True))


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


def patch_array(patches_dir: Path, frame: pd.DataFrame) -> PatchArray:
    """The patches a frame lists (image_id, index), left in the per-image `.npy` files until read."""
    image_ids = frame["image_id"].astype(str).to_numpy()
    names, file_of_row = np.unique(image_ids, return_inverse=True)
    layouts = tuple(read_layout(Path(patches_dir) / f"{name}.npy") for name in names)
    rows = frame["index"].to_numpy(dtype=np.int64)
    for file_index, layout in enumerate(layouts):
        listed = rows[file_of_row == file_index]
        if len(listed) and (listed.min() < 0 or listed.max() >= layout.rows):
            raise PathcnnError(
                f"{layout.path}: holds {layout.rows} patches but the split lists patch {listed.max()}; "
                "re-run the split stage (dvc repro split)"
            )
    if len({layout.row_shape for layout in layouts}) > 1:
        raise PathcnnError(f"{patches_dir}: patch arrays of different sizes; re-run dvc repro patches")
    return PatchArray(layouts, file_of_row.astype(np.int64), rows)


def patch_set(patches_dir: Path, frame: pd.DataFrame, class_names: tuple[str, ...]) -> PatchSet:
    """A PatchSet from the rows of a split frame."""
    frame = frame.reset_index(drop=True)
    lookup = {name: index for index, name in enumerate(class_names)}
    labels = frame["label"].map(lookup).to_numpy(dtype=np.int64)
    return PatchSet(patches=patch_array(patches_dir, frame), labels=labels, frame=frame)


def split_sets(patches_dir: Path, split: pd.DataFrame, class_names: tuple[str, ...]) -> dict[str, PatchSet]:
    """train, val and test PatchSets of one split file."""
    return {
        part: patch_set(patches_dir, split[split["split"] == part], class_names) for part in ("train", "val", "test")
    }
