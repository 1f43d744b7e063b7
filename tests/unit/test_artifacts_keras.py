"""save_keras_model: the same weights give the same .keras bytes, and the file loads back to the same model."""

from __future__ import annotations

import time
import zipfile
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from pathcnn.artifacts import save_keras_model
from pathcnn.params import TrainParams

keras = pytest.importorskip("keras")
psutil = pytest.importorskip("psutil")

from pathcnn.models import make_model  # noqa: E402

# The zip date_time of an entry has a resolution of two seconds, so saves this far apart get different dates.
PAUSE_SECONDS = 2.1


def fitted_model() -> keras.Model:
    """A tiny compiled model after one epoch, so the file holds optimizer state as the train stage's does."""
    keras.utils.set_random_seed(0)
    model = make_model((16, 16, 3), 2, TrainParams(conv_blocks=1, filters=4, dense_units=8))
    # Named: an unnamed Adam is called adam_1 when it is the second in the process, and the name is saved.
    model.compile(optimizer=keras.optimizers.Adam(name="adam"), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.integers(0, 256, (8, 16, 16, 3)).astype("float32"), np.array([0, 1] * 4), epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return fitted_model()


def entry(keras_file: Path, name: str) -> bytes:
    with zipfile.ZipFile(keras_file) as archive:
        return archive.read(name)


def test_same_weights_saved_seconds_apart_give_identical_bytes(model: keras.Model, tmp_path: Path) -> None:
    # Built and fitted the same way: the same weights in other Python objects (Keras writes id() into config.json).
    twin = fitted_model()
    for weight, twin_weight in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_array_equal(weight, twin_weight)
    model.save(tmp_path / "plain_first.keras")
    save_keras_model(model, tmp_path / "first" / "model.keras")
    time.sleep(PAUSE_SECONDS)
    twin.save(tmp_path / "plain_second.keras")
    save_keras_model(twin, tmp_path / "second" / "model.keras")
    # Control: without the rewrite both the metadata (save time) and the config (object ids) differ.
    for name in ("metadata.json", "config.json"):
        assert entry(tmp_path / "plain_first.keras", name) != entry(tmp_path / "plain_second.keras", name)
    assert (tmp_path / "first" / "model.keras").read_bytes() == (tmp_path / "second" / "model.keras").read_bytes()
    assert [path.name for path in (tmp_path / "second").iterdir()] == ["model.keras"]  # no temporary left


def test_weights_written_through_a_temporary_file_give_the_same_bytes(
    model: keras.Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_keras_model(model, tmp_path / "in_memory" / "model.keras")
    model.save(tmp_path / "in_memory" / "plain.keras")
    # Keras writes the weights through a temporary file when they exceed half the memory psutil reports available.
    memory = namedtuple("memory", "available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(available=0))
    save_keras_model(model, tmp_path / "low_memory" / "model.keras")
    model.save(tmp_path / "low_memory" / "plain.keras")
    in_memory, low_memory = tmp_path / "in_memory", tmp_path / "low_memory"
    # Control: without the rewrite the two routes give different bytes (if not, this test no longer takes both).
    assert (in_memory / "plain.keras").read_bytes() != (low_memory / "plain.keras").read_bytes()
    assert (in_memory / "model.keras").read_bytes() == (low_memory / "model.keras").read_bytes()


def test_saved_model_loads_with_the_same_weights_and_predictions(model: keras.Model, tmp_path: Path) -> None:
    save_keras_model(model, tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    for original, restored in zip(model.weights, loaded.weights, strict=True):
        assert original.path == restored.path
        np.testing.assert_array_equal(original.numpy(), restored.numpy())
    for original, restored in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(original), np.asarray(restored))
    batch = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(batch, verbose=0), loaded.predict(batch, verbose=0))
    model.save(tmp_path / "plain.keras")
    assert loaded.get_config() == keras.models.load_model(tmp_path / "plain.keras").get_config()


def test_a_changed_weight_gives_different_bytes(tmp_path: Path) -> None:
    model = fitted_model()
    save_keras_model(model, tmp_path / "before.keras")
    kernel = model.get_layer("classes").kernel
    changed = kernel.numpy()
    changed[0, 0] += 1e-3
    kernel.assign(changed)
    save_keras_model(model, tmp_path / "after.keras")
    assert (tmp_path / "before.keras").read_bytes() != (tmp_path / "after.keras").read_bytes()
