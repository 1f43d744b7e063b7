"""Fitting a CNN on stored patches: the one training function used by train, tune, crossval and control."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from pathcnn.console import interactive
from pathcnn.models import make_model
from pathcnn.params import ClassWeights, TrainParams
from pathcnn.patchsets import PatchSet

# Stain matrix of haematoxylin, eosin and DAB in optical density (Ruifrok & Johnston, as in skimage.color).
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float32)
RGB_FROM_HED = RGB_FROM_HED / np.linalg.norm(RGB_FROM_HED, axis=1, keepdims=True)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED).astype(np.float32)


@dataclass(frozen=True)
class FitResult:
    """A fitted model with its per-epoch history."""

    model: keras.Model
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int


def augment_batch(images: tf.Tensor, generator: tf.random.Generator, flips: bool, color_jitter: float) -> tf.Tensor:
    """Random flips and 90-degree rotations, and HED stain jitter, applied per image of a float batch."""
    if flips:
        count = tf.shape(images)[0]
        rotations = tf.stack([tf.image.rot90(images, k) for k in range(4)], axis=1)
        turns = generator.uniform([count], 0, 4, dtype=tf.int32)
        images = tf.gather(rotations, turns, axis=1, batch_dims=1)
        mirror = generator.uniform([count, 1, 1, 1]) < 0.5
        images = tf.where(mirror, tf.image.flip_left_right(images), images)
    if color_jitter > 0:
        # Tellez et al. 2018: scale and shift each stain's concentration in optical density space.
        count = tf.shape(images)[0]
        density = -tf.math.log((images + 1.0) / 256.0)
        stains = tf.einsum("bhwc,cs->bhws", density, HED_FROM_RGB)
        scale = generator.uniform([count, 1, 1, 3], 1.0 - color_jitter, 1.0 + color_jitter)
        shift = generator.uniform([count, 1, 1, 3], -color_jitter, color_jitter) * 0.1
        density = tf.einsum("bhws,sc->bhwc", stains * scale + shift, RGB_FROM_HED)
        images = tf.clip_by_value(256.0 * tf.exp(-density) - 1.0, 0.0, 255.0)
    return images


def make_dataset(
    patches: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    training: bool,
    flips: bool = False,
    color_jitter: float = 0.0,
) -> tf.data.Dataset:
    """A tf.data pipeline over uint8 patches: shuffled and augmented per batch when training."""
    dataset = tf.data.Dataset.from_tensor_slices((patches, labels))
    if training:
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
    if training and (flips or color_jitter > 0):
        generator = tf.random.Generator.from_seed(seed)
        dataset = dataset.map(lambda x, y: (augment_batch(x, generator, flips, color_jitter), y))
    return dataset.prefetch(tf.data.AUTOTUNE)


def class_weight_map(labels: np.ndarray, num_classes: int, mode: ClassWeights) -> dict[int, float] | None:
    """Inverse-frequency class weights (sklearn's 'balanced'), or None."""
    if mode is ClassWeights.none:
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return {index: float(weight) for index, weight in enumerate(weights)}


def fit_model(
    train: PatchSet,
    val: PatchSet,
    num_classes: int,
    params: TrainParams,
    seed: int,
    max_epochs: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | None = None,
) -> FitResult:
    """Build the CNN from params and fit it, early-stopping on validation loss (best weights restored)."""
    model = make_model(tuple(train.patches.shape[1:]), num_classes, params)
    model.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=params.patience, restore_best_weights=True)
    history = model.fit(
        make_dataset(train.patches, train.labels, params.batch_size, seed, True, params.augment, params.color_jitter),
        validation_data=make_dataset(val.patches, val.labels, params.batch_size, seed, False),
        epochs=max_epochs or params.max_epochs,
        class_weight=class_weight_map(train.labels, num_classes, params.class_weights),
        callbacks=[stopper, *callbacks],
        shuffle=False,  # the tf.data pipeline shuffles (seeded); Keras would only warn that it ignores this
        verbose=(1 if interactive() else 0) if verbose is None else verbose,  # a progress bar on a terminal only
    )
    record = {key: [float(value) for value in values] for key, values in history.history.items()}
    epochs_run = len(record.get("loss", []))
    best_epoch = int(np.argmin(record["val_loss"])) + 1 if record.get("val_loss") else epochs_run
    return FitResult(model=model, history=record, epochs_run=epochs_run, best_epoch=best_epoch)


def predict_probabilities(model: keras.Model, patches: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Class probabilities for uint8 patches, batch by batch."""
    if len(patches) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(patches).batch(batch_size).map(lambda x: tf.cast(x, tf.float32))
    return np.asarray(model.predict(dataset, verbose=0), dtype=np.float32)
