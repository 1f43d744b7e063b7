"""The CNN: a functional Keras model built from architecture params."""

from __future__ import annotations

import keras
from keras import layers, regularizers

from pathcnn.params import Head, TrainParams


def make_model(input_shape: tuple[int, int, int], num_classes: int, params: TrainParams) -> keras.Model:
    """Conv blocks (conv, optional batch norm, ReLU, max-pool), a pooled or flattened head, softmax output.

    Inputs are raw 0-255 RGB values; the model rescales them itself, so callers never normalise.
    """
    kernel_l2 = regularizers.L2(params.l2_kernel) if params.l2_kernel > 0 else None
    bias_l2 = regularizers.L2(params.l2_bias) if params.l2_bias > 0 else None
    inputs = keras.Input(shape=input_shape, name="patch")
    tensor = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    for block in range(params.conv_blocks):
        tensor = layers.Conv2D(
            params.filters * 2**block,
            params.kernel_size,
            padding="same",
            use_bias=not params.batch_norm,
            kernel_regularizer=kernel_l2,
            bias_regularizer=None if params.batch_norm else bias_l2,
            name=f"block{block + 1}_conv",
        )(tensor)
        if params.batch_norm:
            tensor = layers.BatchNormalization(momentum=0.9, name=f"block{block + 1}_norm")(tensor)
        tensor = layers.ReLU(name=f"block{block + 1}_relu")(tensor)
        tensor = layers.MaxPooling2D(2, name=f"block{block + 1}_pool")(tensor)
    if params.head is Head.global_pool:
        tensor = layers.GlobalAveragePooling2D(name="pool")(tensor)
    else:
        tensor = layers.Flatten(name="flatten")(tensor)
    tensor = layers.Dropout(params.dropout, name="dropout1")(tensor)
    tensor = layers.Dense(
        params.dense_units, activation="relu", kernel_regularizer=kernel_l2, bias_regularizer=bias_l2, name="dense"
    )(tensor)
    tensor = layers.Dropout(params.dropout, name="dropout2")(tensor)
    outputs = layers.Dense(
        num_classes, activation="softmax", kernel_regularizer=kernel_l2, bias_regularizer=bias_l2, name="classes"
    )(tensor)
    return keras.Model(inputs, outputs, name="pathcnn")
