"""Benchmark 2: one training epoch fed from the stored arrays (tf.data) against the notebook's JPEG files.

The notebook fed Keras `ImageDataGenerator.flow_from_dataframe`: a dataframe of JPEG patch files, each batch
read and decoded with PIL in Python, flipped per image in NumPy. Keras 3 removed ImageDataGenerator; its nearest
equivalent is a `keras.utils.PyDataset` doing exactly that per batch (`JpegFrameSequence` below).
`image_dataset_from_directory` is not used: it is a tf.data pipeline with parallel native decoding, which is
not what the notebook ran.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from PIL import Image

WARMUP_STEPS = 3


class JpegFrameSequence(keras.utils.PyDataset):
    """flow_from_dataframe's behaviour: per batch, read JPEG files with PIL, random flips, reshuffle each epoch."""

    def __init__(self, frame: pd.DataFrame, batch_size: int, seed: int, flips: bool) -> None:
        super().__init__()
        self.files = frame["filename"].to_numpy()
        self.labels = frame["class_index"].to_numpy(dtype=np.int64)
        self.batch_size = batch_size
        self.flips = flips
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(self.files))

    def __len__(self) -> int:
        return math.ceil(len(self.files) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        batch = np.stack([self._read(name) for name in self.files[rows]])
        return batch, self.labels[rows]

    def _read(self, name: str) -> np.ndarray:
        with Image.open(name) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        if self.flips:  # ImageDataGenerator(horizontal_flip=True, vertical_flip=True)
            if self.rng.random() < 0.5:
                pixels = pixels[:, ::-1]
            if self.rng.random() < 0.5:
                pixels = pixels[::-1]
        return pixels

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.files))


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def write_jpeg_patches(patches: np.ndarray, frame: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """The notebook's storage: one JPEG file per patch (PIL's default quality) and a dataframe listing them."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for patch, patch_id in zip(patches, frame["patch_id"], strict=True):
        name = folder / f"{patch_id}.jpg"
        Image.fromarray(patch).save(name)
        names.append(str(name))
    return pd.DataFrame({"filename": names, "class_index": frame["class_index"].to_numpy()})


def timed_epochs(model: keras.Model, data: Any, epochs: int, class_weight: dict[int, float] | None) -> list[float]:
    """Fit for `epochs` epochs and return each epoch's wall time."""
    timer = EpochTimer()
    model.fit(data, epochs=epochs, class_weight=class_weight, callbacks=[timer], verbose=0)
    return timer.seconds


def input_only_seconds(data: Any) -> float:
    """Time to produce one epoch of batches without any model."""
    start = time.perf_counter()
    if isinstance(data, keras.utils.PyDataset):
        for index in range(len(data)):
            data[index]
    else:
        for _ in data:
            pass
    return time.perf_counter() - start


def run(patches_dir: str, work_dir: str, epochs: int, compute_steps: int, seed: int) -> dict[str, Any]:
    """Per-epoch time and patches/second of both input ways, and step time with and without input."""
    from pathcnn.models import make_model
    from pathcnn.params import TrainParams
    from pathcnn.patchsets import load_patches, read_manifest
    from pathcnn.seeding import seed_everything
    from pathcnn.training import class_weight_map, make_dataset

    seed_everything(seed)
    params = TrainParams()  # the default model and batch size
    frame = read_manifest(Path(patches_dir))
    frame = frame[frame["kept"]].reset_index(drop=True)
    class_names = sorted(frame["label"].unique())
    frame["class_index"] = frame["label"].map({name: i for i, name in enumerate(class_names)})
    patches = load_patches(Path(patches_dir), frame)
    labels = frame["class_index"].to_numpy(dtype=np.int64)
    weights = class_weight_map(labels, len(class_names), params.class_weights)
    table = write_jpeg_patches(patches, frame, Path(work_dir) / "jpeg")

    def compiled() -> keras.Model:
        model = make_model(tuple(patches.shape[1:]), len(class_names), params)
        model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss="sparse_categorical_crossentropy")
        return model

    arrays = make_dataset(patches, labels, params.batch_size, seed, True, params.augment, params.color_jitter)
    files = JpegFrameSequence(table, params.batch_size, seed, params.augment)
    steps = len(files)

    arrays_model = compiled()
    arrays_epochs = timed_epochs(arrays_model, arrays, epochs, weights)
    files_epochs = timed_epochs(compiled(), files, epochs, weights)

    # The same compiled step on one batch held in memory: the model's cost with no input work at all.
    images, batch_labels = next(iter(arrays))
    for _ in range(WARMUP_STEPS):
        arrays_model.train_on_batch(images, batch_labels)
    start = time.perf_counter()
    for _ in range(compute_steps):
        arrays_model.train_on_batch(images, batch_labels)
    step_without_input = (time.perf_counter() - start) / compute_steps

    arrays_input = input_only_seconds(arrays)
    files_input = input_only_seconds(files)
    count = len(labels)
    # The fastest epoch after the first (which also compiles): the least disturbed by other work on the machine.
    arrays_epoch, files_epoch = min(arrays_epochs[1:] or arrays_epochs), min(files_epochs[1:] or files_epochs)
    return {
        "patches": count,
        "steps_per_epoch": steps,
        "epochs_timed": epochs,
        "arrays_epoch_seconds": arrays_epoch,
        "files_epoch_seconds": files_epoch,
        "arrays_first_epoch_seconds": arrays_epochs[0],
        "files_first_epoch_seconds": files_epochs[0],
        "arrays_patches_per_second": count / arrays_epoch,
        "files_patches_per_second": count / files_epoch,
        "step_with_input_ms": 1000 * arrays_epoch / steps,
        "step_without_input_ms": 1000 * step_without_input,
        "arrays_input_only_patches_per_second": count / arrays_input,
        "files_input_only_patches_per_second": count / files_input,
    }
