"""One seed for everything: Python, NumPy and TensorFlow come from `base.seed` through this function."""

from __future__ import annotations

import random

import numpy as np


def seed_everything(seed: int, deterministic_ops: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow; ask TensorFlow for deterministic kernels where it has them.

    Not PYTHONHASHSEED: Python reads it at start-up only, so setting it here would not change this process
    (issue 12).
    """
    random.seed(seed)
    np.random.seed(seed)
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()
