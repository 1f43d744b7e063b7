"""The unfamiliarity score on synthetic inputs: distances, calibration, stain features, transformations, predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathcnn import familiarity as fam
from pathcnn import predict
from pathcnn.heatmaps import UNFAMILIAR_COLOUR, tint_patches
from tests.conftest import seed_image_dir


def seed_patches(count: int = 12) -> np.ndarray:
    """Real H&E: 100 px patches from the centre of the first seed image."""
    with Image.open(sorted(seed_image_dir().glob("*.jpg"))[0]) as image:
        picture = np.asarray(image.convert("RGB"))
    top, left = picture.shape[0] // 2 - 150, picture.shape[1] // 2 - 200
    return fam.all_tiles(picture[top : top + 300, left : left + 400], 100)[:count]


def test_mahalanobis_separates_a_shifted_cloud() -> None:
    generator = np.random.default_rng(0)
    reference = generator.normal(size=(500, 4))
    gaussian = fam.fit_gaussian(reference)
    inside = gaussian.distance(generator.normal(size=(200, 4)))
    outside = gaussian.distance(generator.normal(size=(200, 4)) + 4.0)
    assert 1.5 < np.median(inside) < 2.5  # sqrt(4) for a standard normal in 4 dimensions
    assert fam.auroc(inside, outside) > 0.99
    assert gaussian.distance(gaussian.mean[None]) == pytest.approx([0.0], abs=1e-9)


def test_neighbours_follow_clusters_a_gaussian_would_merge() -> None:
    generator = np.random.default_rng(1)
    clusters = np.r_[generator.normal(-5, 0.3, (200, 2)), generator.normal(5, 0.3, (200, 2))]
    neighbours = fam.fit_neighbours(clusters)
    in_clusters = neighbours.distance(np.array([[-5.0, -5.0], [5.0, 5.0]]))
    between = neighbours.distance(np.array([[0.0, 0.0]]))
    assert between[0] > 10 * in_clusters.max()
    assert len(neighbours.distance(np.zeros((0, 2)))) == 0


def test_calibration_sets_the_target_rate_and_cross_fits_it() -> None:
    generator = np.random.default_rng(2)
    held_out = {
        f"image{i}": fam.Distances(generator.gamma(2.0, 1.0 + 0.2 * i, 300), generator.gamma(2.0, 1.0, 300))
        for i in range(4)
    }
    calibration = fam.calibrate(held_out, 0.05)
    pooled = np.concatenate([calibration.score(d) for d in held_out.values()])
    assert np.mean(pooled > calibration.threshold) == pytest.approx(0.05, abs=1 / len(pooled))
    # Image 3 has the largest stain distances: judged by the others' threshold it is flagged most often.
    assert max(calibration.per_image_crossfit, key=calibration.per_image_crossfit.get) == "image3"
    assert calibration.false_alarm_rate_max == max(calibration.per_image_crossfit.values())
    assert 0.0 < calibration.false_alarm_rate < 1.0
    with pytest.raises(ValueError, match="at least 2 held-out images"):
        fam.calibrate({"only": held_out["image0"]}, 0.05)


def test_stain_features_see_greyscale_and_dab() -> None:
    patches = seed_patches()
    names = list(fam.STAIN_FEATURES)
    original = fam.stain_features(patches)
    grey = fam.stain_features(fam.greyscale(patches))
    restained = fam.stain_features(fam.restain_dab(patches))
    saturation, eosin = names.index("saturation"), names.index("eosin_share")
    assert grey[:, saturation].max() < 0.01 < original[:, saturation].min()
    assert grey[:, eosin].max() < 0.01 and restained[:, eosin].max() < 0.01  # no eosin left in either
    assert restained[:, eosin].mean() < original[:, eosin].mean()
    assert np.allclose(np.linalg.norm(original[:, :3], axis=1), 1.0)  # the density direction is a unit vector


def test_transformations_keep_shape_and_type() -> None:
    patches = seed_patches(4)
    for name, transform in fam.TRANSFORMS.items():
        changed = transform(patches)
        assert changed.shape == patches.shape and changed.dtype == np.uint8, name
        assert not np.array_equal(changed, patches), name
    assert fam.rescaled(np.zeros((100, 200, 3), np.uint8), 0.5).shape == (50, 100, 3)
    assert fam.all_tiles(np.zeros((250, 320, 3), np.uint8), 100).shape == (6, 100, 100, 3)
    assert set(fam.texture_images()) == set(fam.TEXTURES)


def test_stain_jitter_without_strength_changes_nothing_and_is_seeded() -> None:
    patches = seed_patches(4)
    assert np.array_equal(fam.stain_jittered(patches, 0.0, 0), fam.to_uint8(np.rint(patches)))  # no jitter: same
    jittered = fam.stain_jittered(patches, 0.5, 0)
    assert not np.array_equal(jittered, patches)
    assert np.array_equal(jittered, fam.stain_jittered(patches, 0.5, 0))  # seeded


def reference(threshold: float = 2.0) -> fam.Reference:
    generator = np.random.default_rng(3)
    return fam.Reference(
        fam.fit_gaussian(generator.normal(size=(50, len(fam.STAIN_FEATURES)))),
        fam.fit_neighbours(generator.normal(size=(50, 8))),
        1.5,
        2.5,
        threshold,
        0.5,
        0.07,
    )


def test_reference_round_trips_through_its_file(tmp_path: Path) -> None:
    saved = reference()
    saved.save(tmp_path / "model.familiarity.npz")
    loaded = fam.Reference.load(tmp_path / "model.familiarity.npz")
    stain, embedding = np.ones((3, len(fam.STAIN_FEATURES))), np.ones((3, 8))
    assert np.array_equal(loaded.score(stain, embedding), saved.score(stain, embedding))
    assert (loaded.threshold, loaded.image_share, loaded.false_alarm_rate) == (2.0, 0.5, 0.07)
    fam.save_unavailable(tmp_path / "none.npz", "too few images")
    assert fam.Reference.load(tmp_path / "none.npz") is None


def patch_predictions(scores: np.ndarray, stain_led: np.ndarray) -> predict.PatchPredictions:
    count = len(scores)
    probabilities = np.tile(np.array([[0.9, 0.1]], np.float32), (count, 1))
    return predict.PatchPredictions(
        rows=np.arange(count),
        cols=np.zeros(count, np.int64),
        tissue_fraction=np.ones(count, np.float32),
        kept=np.ones(count, bool),
        probabilities=probabilities,
        colour_stats=np.zeros((count, 6), np.float32),
        unfamiliar_score=scores,
        stain_led=stain_led,
    )


def test_an_image_mostly_unlike_training_is_called_uncertain_with_its_reasons() -> None:
    scores = np.array([2.0, 3.0, 1.5, 0.5, 0.2, 4.0, 1.2, 0.9])  # 5 of 8 above 1
    led = np.array([True, True, True, False, False, True, False, False])
    call = predict.image_call(patch_predictions(scores, led), ("A", "B"), None, image_share=0.5)
    assert call["call"] == predict.UNCERTAIN and call["call_if_familiar"] == "A"
    assert call["unfamiliar_patch_share"] == 0.625 and call["image_unfamiliar"] is True
    assert call["unfamiliar_reasons"][0].startswith("stain: 4 patches")
    assert call["unfamiliar_reasons"][1].startswith("appearance to the CNN: 1 patch unlike")
    assert any("the call is `uncertain`, not A" in warning for warning in call["warnings"])
    assert call["mean_probability"] == {"A": 0.9, "B": 0.1}  # nothing hidden


def test_a_familiar_image_keeps_its_call_and_no_reference_says_unknown() -> None:
    scores = np.array([0.2, 0.4, 1.1, 0.3])  # 1 of 4 above 1: below the image share
    familiar = predict.image_call(patch_predictions(scores, np.zeros(4, bool)), ("A", "B"), None, image_share=0.5)
    assert familiar["call"] == "A" and familiar["image_unfamiliar"] is False
    assert familiar["unfamiliar_patch_share"] == 0.25
    unknown = predict.image_call(patch_predictions(np.full(4, np.nan), np.zeros(4, bool)), ("A", "B"), None)
    assert unknown["call"] == "A" and unknown["image_unfamiliar"] is None
    assert unknown["unfamiliar_patch_share"] is None


def test_unfamiliar_patches_get_their_own_colour_on_the_heatmap() -> None:
    canvas = np.full((100, 200, 3), 255, np.uint8)
    tint_patches(
        canvas,
        np.array([0, 0]),
        np.array([0, 1]),
        np.array([0, 0]),
        np.array([1.0, 1.0]),
        2,
        100,
        100,
        unfamiliar=np.array([False, True]),
    )
    familiar, strange = canvas[50, 50].astype(int), canvas[50, 150].astype(int)
    assert not np.array_equal(familiar, strange)
    # The unfamiliar patch moved towards the unfamiliar colour: more red and blue than green.
    assert strange[0] > strange[1] and strange[2] > strange[1] and UNFAMILIAR_COLOUR[1] == 0
