"""Patch arrays read from the per-image .npy files, and the tf.data pipeline that streams them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from pathcnn.errors import PathcnnError
from pathcnn.patchsets import PatchSet, patch_array, read_layout
from pathcnn.training import make_dataset, predict_probabilities


def write_arrays(folder: Path, counts: dict[str, int], side: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {name: rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8) for name, count in counts.items()}
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    return arrays


def listing(pairs: list[tuple[str, int]]) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [name for name, _ in pairs], "index": [index for _, index in pairs]})


def test_rows_come_back_in_the_listed_order(tmp_path: Path) -> None:
    arrays = write_arrays(tmp_path, {"A1": 5, "B1": 4})
    pairs = [("B1", 3), ("A1", 0), ("A1", 4), ("B1", 0), ("A1", 2)]
    patches = patch_array(tmp_path, listing(pairs))
    expected = np.stack([arrays[name][index] for name, index in pairs])
    assert patches.shape == (5, 6, 6, 3) and len(patches) == 5 and patches.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(patches), expected)
    np.testing.assert_array_equal(patches[[4, 0]], expected[[4, 0]])
    np.testing.assert_array_equal(patches[1:3], expected[1:3])
    np.testing.assert_array_equal(patches[-1], expected[-1])
    mask = np.array([True, False, True, False, True])
    np.testing.assert_array_equal(np.asarray(patches.subset(mask)), expected[mask])


def test_a_patch_set_subset_stays_on_disk_and_keeps_labels(tmp_path: Path) -> None:
    write_arrays(tmp_path, {"A1": 3})
    frame = listing([("A1", 0), ("A1", 1), ("A1", 2)])
    full = PatchSet(patch_array(tmp_path, frame), np.array([0, 1, 0]), frame)
    part = full.subset(np.array([False, True, True]))
    assert type(part.patches) is type(full.patches)
    assert part.labels.tolist() == [1, 0] and part.frame["index"].tolist() == [1, 2]


def test_a_listed_patch_beyond_the_file_is_refused(tmp_path: Path) -> None:
    write_arrays(tmp_path, {"A1": 3})
    with pytest.raises(PathcnnError, match=r"A1\.npy: holds 3 patches but the split lists patch 7; re-run the split"):
        patch_array(tmp_path, listing([("A1", 7)]))


def test_missing_and_wrong_arrays_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PathcnnError, match=r"A1\.npy: missing; run the patches stage"):
        patch_array(tmp_path, listing([("A1", 0)]))
    np.save(tmp_path / "B1.npy", np.zeros((2, 4, 4, 3), dtype=np.float32))
    with pytest.raises(PathcnnError, match=r"B1\.npy: expected C-ordered uint8 patches"):
        read_layout(tmp_path / "B1.npy")
    (tmp_path / "C1.npy").write_bytes(b"not numpy")
    with pytest.raises(PathcnnError, match=r"C1\.npy: not a patch array"):
        read_layout(tmp_path / "C1.npy")


def test_a_truncated_array_file_is_reported_when_read(tmp_path: Path) -> None:
    write_arrays(tmp_path, {"A1": 4})
    path = tmp_path / "A1.npy"
    path.write_bytes(path.read_bytes()[:-50])
    patches = patch_array(tmp_path, listing([("A1", 0), ("A1", 3)]))
    with pytest.raises(PathcnnError, match=r"A1\.npy: shorter than its header says"):
        np.asarray(patches)


def test_streaming_gives_the_batches_of_the_in_memory_array(tmp_path: Path) -> None:
    arrays = write_arrays(tmp_path, {"A1": 20, "B1": 17}, side=8)
    pairs = [("A1", index) for index in range(20)] + [("B1", index) for index in range(17)]
    on_disk = patch_array(tmp_path, listing(pairs))
    in_memory = np.concatenate([arrays["A1"], arrays["B1"]])
    labels = np.array([0] * 20 + [1] * 17)
    tf.random.set_seed(3)
    streamed = list(make_dataset(on_disk, labels, 8, seed=5, training=True, flips=True, color_jitter=0.3).take(5))
    tf.random.set_seed(3)
    held = list(make_dataset(in_memory, labels, 8, seed=5, training=True, flips=True, color_jitter=0.3).take(5))
    assert [len(batch[1]) for batch in streamed] == [8, 8, 8, 8, 5]  # 37 patches, then the second epoch
    for (images, batch_labels), (expected_images, expected_labels) in zip(streamed, held, strict=True):
        np.testing.assert_array_equal(images.numpy(), expected_images.numpy())
        np.testing.assert_array_equal(batch_labels.numpy(), expected_labels.numpy())
    seen = np.concatenate([labels for _, labels in make_dataset(on_disk, labels, 8, seed=5, training=True)])
    assert sorted(seen.tolist()) == sorted(labels.tolist())  # a permutation: every patch once per epoch


def test_predictions_from_disk_equal_predictions_from_memory(tmp_path: Path) -> None:
    import keras

    arrays = write_arrays(tmp_path, {"A1": 9}, side=8)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2, "softmax")])
    on_disk = predict_probabilities(model, patch_array(tmp_path, listing([("A1", i) for i in range(9)])), 4)
    np.testing.assert_array_equal(on_disk, predict_probabilities(model, arrays["A1"], 4))
    assert on_disk.shape == (9, 2)
