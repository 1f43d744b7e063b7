"""The CNN builder: output shapes and that every architecture param takes effect."""

from __future__ import annotations

import numpy as np
import pytest

from pathcnn.params import Head, TrainParams

keras = pytest.importorskip("keras")

from pathcnn.models import make_model  # noqa: E402


@pytest.mark.parametrize("head", [Head.global_pool, Head.flatten])
@pytest.mark.parametrize("blocks", [1, 3])
def test_output_is_a_probability_per_class(head: Head, blocks: int) -> None:
    params = TrainParams(conv_blocks=blocks, filters=4, dense_units=8, head=head)
    model = make_model((100, 100, 3), 2, params)
    batch = np.random.default_rng(0).integers(0, 256, (3, 100, 100, 3)).astype("float32")
    output = model.predict(batch, verbose=0)
    assert output.shape == (3, 2)
    np.testing.assert_allclose(output.sum(axis=1), 1.0, rtol=1e-5)


def test_architecture_params_shape_the_network() -> None:
    params = TrainParams(conv_blocks=3, filters=8, kernel_size=5, batch_norm=False, dense_units=16, l2_kernel=0.01)
    model = make_model((100, 100, 3), 3, params)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convs] == [8, 16, 32]
    assert convs[0].kernel_size == (5, 5)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert model.get_layer("block3_pool").output.shape[1:3] == (12, 12)
    assert model.get_layer("dense").units == 16
    assert model.output_shape == (None, 3)
    assert model.losses, "L2 regularisation adds losses"


def test_batch_norm_adds_normalisation_layers() -> None:
    model = make_model((100, 100, 3), 2, TrainParams(conv_blocks=2, filters=4, batch_norm=True))
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 2
