"""Fitting a CNN on stored patches: the one training function used by train, tune, crossval and control."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from pathcnn.console import interactive
from pathcnn.evaluation import Evaluation, evaluate_probabilities
from pathcnn.models import make_model
from pathcnn.params import ClassWeights, TrainParams
from pathcnn.patchsets import PatchArray, PatchSet
from pathcnn.seeding import seed_everything
from pathcnn.stain import normalize_sets

# Callbacks made from the sets as the fit sees them (after stain normalisation).
CallbacksFor = Callable[[dict[str, PatchSet]], Sequence[keras.callbacks.Callback]]
# Stain matrix of haematoxylin, eosin and DAB in optical density (Ruifrok & Johnston, as in skimage.color).
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float32)
RGB_FROM_HED = RGB_FROM_HED / np.linalg.norm(RGB_FROM_HED, axis=1, keepdims=True)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED).astype(np.float32)
# Batch-norm statistics are measured on at most this many training patches, evenly spaced through the set
# (every image contributes): 128 patches hold 1.28 million pixels per channel at the first layer.
STATISTICS_PATCHES = 128


@dataclass(frozen=True)
class FitResult:
    """A fitted model with its per-epoch history."""

    model: keras.Model
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int


@dataclass(frozen=True)
class TrainOutcome(FitResult):
    """A fit with the class probabilities of every part it was given, and their evaluation."""

    probabilities: dict[str, np.ndarray]
    evaluation: Evaluation


def turn_and_mirror(images: np.ndarray, turns: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Each square image turned counter-clockwise by turns[i] quarter turns, then mirrored left-right where mirror[i].

    One NumPy copy per (turns, mirror) pair present in the batch, where TensorFlow's rot90 on a batch builds all
    four turns of every image.
    """
    result = np.empty_like(images)
    for quarter_turns in range(4):
        for mirrored in (False, True):
            chosen = np.flatnonzero((turns == quarter_turns) & (mirror == mirrored))
            if len(chosen):
                turned = np.rot90(images[chosen], quarter_turns, axes=(1, 2))
                result[chosen] = turned[:, :, ::-1] if mirrored else turned
    return result


def stain_jitter(images: tf.Tensor, generator: tf.random.Generator, strength: float) -> tf.Tensor:
    """HED stain jitter of a uint8 batch, returned as float 0-255 (Tellez et al. 2018).

    Scales and shifts each stain's concentration in optical density space, per image.
    """
    count = tf.shape(images)[0]
    # The optical density -log((v + 1) / 256) of each of the 256 channel values, looked up per pixel.
    # Computed with TensorFlow's log, like the per-pixel formula it replaces, so results stay the same bits.
    table = -tf.math.log((tf.range(256, dtype=tf.float32) + 1.0) / 256.0)
    density = tf.gather(table, tf.cast(images, tf.int32))
    stains = tf.einsum("bhwc,cs->bhws", density, HED_FROM_RGB)
    scale = generator.uniform([count, 1, 1, 3], 1.0 - strength, 1.0 + strength)
    shift = generator.uniform([count, 1, 1, 3], -strength, strength) * 0.1
    density = tf.einsum("bhws,sc->bhwc", stains * scale + shift, RGB_FROM_HED)
    return tf.clip_by_value(256.0 * tf.exp(-density) - 1.0, 0.0, 255.0)


def make_dataset(
    patches: PatchArray | np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    training: bool,
    flips: bool = False,
    color_jitter: float = 0.0,
) -> tf.data.Dataset:
    """A tf.data pipeline over uint8 patches: shuffled and augmented per batch when training.

    Only positions go through tf.data: each batch's patches are read (and turned and mirrored) when the batch
    is made, so memory holds a few batches, not the dataset. Shuffling positions gives the same order as
    shuffling the patches. Augmentation: random quarter turns and mirroring (the 8 symmetries of a square),
    then stain jitter; all random draws come from one generator seeded with `seed`, in a fixed order.
    """
    count = len(labels)
    positions = tf.data.Dataset.range(count)
    if training:
        positions = positions.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    label_values = tf.constant(np.asarray(labels, dtype=np.int64))
    patch_shape = tuple(int(side) for side in patches.shape[1:])
    flips, color_jitter = flips and training, color_jitter if training else 0.0
    generator = tf.random.Generator.from_seed(seed) if flips or color_jitter > 0 else None

    def read(rows: np.ndarray, turns: np.ndarray, mirror: np.ndarray) -> np.ndarray:
        images = patches[rows]
        return turn_and_mirror(images, turns, mirror) if flips else images

    def batch_of(rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        size = tf.shape(rows)[0]
        turns, mirror = tf.zeros([size], tf.int32), tf.zeros([size], tf.bool)
        if flips:
            turns = generator.uniform([size], 0, 4, dtype=tf.int32)
            mirror = generator.uniform([size]) < 0.5
        images = tf.numpy_function(read, [rows, turns, mirror], tf.uint8, stateful=False)
        images.set_shape((None, *patch_shape))
        images = stain_jitter(images, generator, color_jitter) if color_jitter > 0 else tf.cast(images, tf.float32)
        return images, tf.gather(label_values, rows)

    return positions.batch(batch_size).map(batch_of).prefetch(tf.data.AUTOTUNE)


def class_weight_map(labels: np.ndarray, num_classes: int, mode: ClassWeights) -> dict[int, float] | None:
    """Inverse-frequency class weights (sklearn's 'balanced'), or None."""
    if mode is ClassWeights.none:
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return {index: float(weight) for index, weight in enumerate(weights)}


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The model's batch-normalisation layers, in the order data flows through them."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def batch_norm_inputs(model: keras.Model) -> list[tuple[keras.layers.BatchNormalization, keras.Model]]:
    """Each batch-norm layer with a model (sharing the weights) that outputs that layer's input."""
    return [(layer, keras.Model(model.inputs, layer.input)) for layer in batch_norm_layers(model)]


def recompute_batch_norm_statistics(
    model: keras.Model,
    patches: PatchArray | np.ndarray,
    batch_size: int = 128,
    inputs_of: list[tuple[keras.layers.BatchNormalization, keras.Model]] | None = None,
) -> None:
    """Set each batch-norm layer's moving mean and variance to the statistics of its inputs on `patches`.

    Layer by layer in inference mode ("precise BN"), so each layer's statistics are those of the inputs it gets
    at inference, after the layers before it use their recomputed statistics. Keras' moving averages instead
    mix a few stain-jittered training batches of an ever-changing network, and inference-mode accuracy then
    swung between chance and near-perfect from one epoch to the next (issue 16). At most STATISTICS_PATCHES
    patches are used, evenly spaced. `inputs_of` reuses the sub-models of batch_norm_inputs (their compiled
    predict functions) across calls.
    """
    chosen = np.unique(np.linspace(0, len(patches) - 1, min(len(patches), STATISTICS_PATCHES)).round().astype(int))
    sample = np.asarray(patches[chosen], dtype=np.float32) if len(patches) else np.zeros((0, 1, 1, 3), np.float32)
    for layer, inputs_of_layer in inputs_of if inputs_of is not None else batch_norm_inputs(model):
        total = squares = None
        count = 0
        for start in range(0, len(sample), batch_size):
            batch = sample[start : start + batch_size]
            values = np.asarray(inputs_of_layer.predict_on_batch(batch), dtype=np.float64)
            values = values.reshape(-1, values.shape[-1])
            total = values.sum(axis=0) if total is None else total + values.sum(axis=0)
            squares = (values**2).sum(axis=0) if squares is None else squares + (values**2).sum(axis=0)
            count += len(values)
        if count == 0:
            return
        mean = total / count
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(squares / count - mean**2, 0.0).astype(np.float32))


class InferenceValidation(keras.callbacks.Callback):
    """After each epoch: batch-norm statistics recomputed on the training patches, then validation measured.

    So the per-epoch validation figures, early stopping and the weights it restores all judge the model as
    inference will run it. Must come before the callbacks that read val_* from the epoch's logs.
    """

    def __init__(self, train_patches: PatchArray | np.ndarray, validation: tf.data.Dataset) -> None:
        super().__init__()
        self.train_patches, self.validation = train_patches, validation
        self.inputs_of: list[tuple[keras.layers.BatchNormalization, keras.Model]] = []

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self.inputs_of = batch_norm_inputs(self.model)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        recompute_batch_norm_statistics(self.model, self.train_patches, inputs_of=self.inputs_of)
        if logs is not None:
            results = self.model.evaluate(self.validation, verbose=0, return_dict=True)
            logs.update({f"val_{name}": float(value) for name, value in results.items()})


def learning_rate_schedule(params: TrainParams, train_count: int) -> float | keras.optimizers.schedules.CosineDecay:
    """train.learning_rate after a linear warm-up from a tenth of it over train.warmup_epochs epochs.

    Keras' CosineDecay with alpha 1.0 is exactly that (its decay then keeps the rate), and being a built-in
    schedule it saves with the .keras file. A measured reason (issue 16): model 2's crossval fold1 with
    seed 43 collapsed at full rate to one constant output in its first epochs (loss ln 2, train accuracy
    0.62, test 0.475); with the warm-up the same fit reached train 1.000 and test 0.989.
    """
    steps = params.warmup_epochs * max(1, math.ceil(train_count / params.batch_size))
    if steps == 0:
        return params.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        params.learning_rate / 10.0, decay_steps=1, alpha=1.0, warmup_target=params.learning_rate, warmup_steps=steps
    )


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
    """Build the CNN from params and fit it, early-stopping on validation loss (best weights restored).

    Validation runs after each epoch's batch-norm statistics are recomputed on the un-augmented training
    patches (InferenceValidation), so every figure describes the model inference uses.
    """
    model = make_model(tuple(train.patches.shape[1:]), num_classes, params)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate_schedule(params, len(train))),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=params.patience, restore_best_weights=True)
    validation = make_dataset(val.patches, val.labels, params.batch_size, seed, False)
    history = model.fit(
        make_dataset(train.patches, train.labels, params.batch_size, seed, True, params.augment, params.color_jitter),
        epochs=max_epochs or params.max_epochs,
        class_weight=class_weight_map(train.labels, num_classes, params.class_weights),
        callbacks=[InferenceValidation(train.patches, validation), stopper, *callbacks],
        shuffle=False,  # the tf.data pipeline shuffles (seeded); Keras would only warn that it ignores this
        verbose=(1 if interactive() else 0) if verbose is None else verbose,  # a progress bar on a terminal only
    )
    record = {key: [float(value) for value in values] for key, values in history.history.items()}
    epochs_run = len(record.get("loss", []))
    best_epoch = int(np.argmin(record["val_loss"])) + 1 if record.get("val_loss") else epochs_run
    return FitResult(model=model, history=record, epochs_run=epochs_run, best_epoch=best_epoch)


def predict_probabilities(model: keras.Model, patches: PatchArray | np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Class probabilities for uint8 patches, reading and predicting one batch at a time.

    A plain loop, not a tf.data pipeline per call: predicting a 10,000 px image band by band peaked ~470 MiB
    higher through make_dataset (benchmarks/predict_memory.py: 2031 vs 1563 MiB), with the same probabilities.
    """
    result = np.zeros((len(patches), model.output_shape[-1]), dtype=np.float32)
    for start in range(0, len(patches), batch_size):
        batch = np.asarray(patches[start : start + batch_size], dtype=np.float32)
        result[start : start + len(batch)] = np.asarray(model.predict_on_batch(batch), dtype=np.float32)
    return result


def train_and_evaluate(
    sets: dict[str, PatchSet],
    class_names: tuple[str, ...],
    train: TrainParams,
    seed: int,
    max_epochs: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | CallbacksFor = (),
) -> TrainOutcome:
    """Seed, fit on train (early stopping on val), then score every part given (train, val and test if any).

    The one fitting path of the train stage, tune trials, crossval folds and control models. `callbacks` may
    be a function of the sets as the fit sees them (stain-normalised), for a callback that predicts on them.
    """
    sets = normalize_sets(sets, train.stain_normalization)  # identity unless train.stain_normalization is set
    seed_everything(seed)
    extra = callbacks(sets) if callable(callbacks) else callbacks
    fit = fit_model(sets["train"], sets["val"], len(class_names), train, seed, max_epochs, extra)
    probabilities = {part: predict_probabilities(fit.model, patch_set.patches) for part, patch_set in sets.items()}
    evaluation = evaluate_probabilities(probabilities, sets, class_names)
    return TrainOutcome(**vars(fit), probabilities=probabilities, evaluation=evaluation)


def last_epochs_range(values: list[float], epochs: int = 5) -> float | None:
    """Max minus min over the last epochs run: how far per-epoch validation accuracy still moves at the end."""
    last = values[-epochs:]
    return float(max(last) - min(last)) if last else None
