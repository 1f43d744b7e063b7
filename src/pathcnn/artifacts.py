"""Atomic writes: a stage killed midway leaves the old output or none, never a half-written file."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import keras


def remove_leftovers(target: Path) -> None:
    """Delete temporaries that a writer of `target` killed hard (SIGKILL) could not clean up."""
    for leftover in target.parent.glob(f".{target.name}.*.tmp*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `target`; swap it in for `target` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield temporary
        if target.exists():
            retired = target.with_name(f".{target.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(target, retired)
            os.replace(temporary, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically, keys sorted, for stable diffs."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_plain) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Write a CSV atomically, without the index."""
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False)


def save_array(path: Path, array: np.ndarray) -> None:
    """Save a .npy atomically (loadable with mmap_mode)."""
    with atomic_path(path) as temporary:
        with temporary.open("wb") as handle:
            np.save(handle, array)


def save_keras_model(model: keras.Model, path: Path) -> None:
    """Save `model` as a .keras file atomically, with bytes that depend on the model, not on when or where it was saved.

    Measured with Keras 3.15, saving the same weights: saves seconds apart differed in metadata.json (`date_saved`)
    and in the zip date_time of model.weights.h5; saves from two processes differed in config.json, where Keras
    marks objects shared between layers (dtype policy, regularizer) with `shared_object_id` = `id(obj)`, a memory
    address. Keras writes the weights in memory, or through a temporary file when they exceed half the memory
    psutil reports available, and the two routes gave different HDF5 bytes. So the archive is rewritten: entries
    sorted, each dated 1980-01-01 00:00:00 (the zip epoch), mode 0600, stored uncompressed as Keras stores them;
    `date_saved` set to that epoch (a placeholder, kept because `keras.saving.KerasFileEditor` reads the key);
    shared object ids renumbered 1, 2, ... in order of appearance; the weights copied object by object
    (h5py `Group.copy`) into a fresh HDF5 file, which gave the same bytes from either route.
    """
    import h5py  # imported here so that stages which never save a model do not load it

    epoch = (1980, 1, 1, 0, 0, 0)
    with atomic_path(path) as temporary:
        model.save(temporary)  # the temporary name ends in .keras, as Keras requires
        with zipfile.ZipFile(temporary) as archive:
            entries = {info.filename: archive.read(info) for info in archive.infolist()}
        metadata = json.loads(entries["metadata.json"])
        if "date_saved" in metadata:
            metadata["date_saved"] = "1980-01-01@00:00:00"
        entries["metadata.json"] = json.dumps(metadata).encode()
        shared_ids: dict[int, int] = {}

        def renumber_shared(node: dict[str, Any]) -> dict[str, Any]:
            if "shared_object_id" in node:
                node["shared_object_id"] = shared_ids.setdefault(node["shared_object_id"], len(shared_ids) + 1)
            return node

        config = json.loads(entries["config.json"], object_hook=renumber_shared)
        entries["config.json"] = json.dumps(config).encode()
        weights = io.BytesIO()
        with h5py.File(io.BytesIO(entries["model.weights.h5"]), "r") as source, h5py.File(weights, "w") as copy:
            for key in sorted(source.attrs):
                copy.attrs[key] = source.attrs[key]
            for name in sorted(source):
                source.copy(source[name], copy, name=name)
        entries["model.weights.h5"] = weights.getvalue()
        with zipfile.ZipFile(temporary, "w") as archive:
            for name in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=epoch)
                info.create_system = 3  # Unix; zipfile would write 0 on Windows
                info.external_attr = 0o600 << 16
                archive.writestr(info, entries[name], compress_type=zipfile.ZIP_STORED)


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars and arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return value.as_posix()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
