"""Handcrafted colour and texture features and the logistic-regression baseline built on them."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from skimage.color import rgb2gray, rgb2hed
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pathcnn.errors import PathcnnError
from pathcnn.evaluation import Evaluation, evaluate_probabilities
from pathcnn.patchsets import PatchArray, PatchSet

MINIMUM_PATCH_SIZE = 16
CHUNK_SIZE = 16
HISTOGRAM_BINS = 16
LBP_POINTS = 8
LBP_RADIUS = 1
LBP_BINS = LBP_POINTS + 2  # "uniform" LBP codes take the values 0..P+1.
GLCM_LEVELS = 32
GLCM_DISTANCES = (1, 3)
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
GLCM_PROPERTIES = ("contrast", "homogeneity", "energy", "correlation")


def _feature_names() -> tuple[str, ...]:
    names: list[str] = []
    for channel in ("red", "green", "blue"):
        names += [f"histogram_{channel}_{bin_index:02d}" for bin_index in range(HISTOGRAM_BINS)]
    for channel in ("hue", "saturation", "value", "haematoxylin", "eosin", "dab"):
        names += [f"{channel}_mean", f"{channel}_std"]
    names += [f"lbp_uniform_{code:02d}" for code in range(LBP_BINS)]
    for distance in GLCM_DISTANCES:
        names += [f"glcm_{prop}_distance{distance}" for prop in GLCM_PROPERTIES]
    return tuple(names)


FEATURE_NAMES: tuple[str, ...] = _feature_names()


def _check_patches(patches: np.ndarray | PatchArray) -> None:
    if not isinstance(patches, (np.ndarray, PatchArray)) or patches.ndim != 4 or patches.shape[-1] != 3:
        shape = getattr(patches, "shape", None)
        raise ValueError(f"patches must be an array of shape (N, H, W, 3), got shape {shape}")
    if patches.dtype != np.uint8:
        raise ValueError(f"patches must be uint8 RGB, got dtype {patches.dtype}")
    height, width = patches.shape[1:3]
    if min(height, width) < MINIMUM_PATCH_SIZE:
        raise ValueError(
            f"patches must be at least {MINIMUM_PATCH_SIZE}x{MINIMUM_PATCH_SIZE} pixels, got {height}x{width}"
        )


def _colour_histograms(patches: np.ndarray) -> np.ndarray:
    """Per-channel 16-bin histograms, each normalised to sum 1: (N, 3 * 16)."""
    count, height, width, channels = patches.shape
    bin_index = patches >> 4  # 256 intensity values / 16 bins = 16 values per bin.
    histograms = np.empty((count, channels, HISTOGRAM_BINS), dtype=np.float64)
    # A loop of small bincounts is much faster than one bincount over the whole batch (cache).
    for patch_index in range(count):
        for channel in range(channels):
            histograms[patch_index, channel] = np.bincount(
                bin_index[patch_index, :, :, channel].ravel(), minlength=HISTOGRAM_BINS
            )
    return histograms.reshape(count, channels * HISTOGRAM_BINS) / float(height * width)


def _rgb_to_hsv(patches: np.ndarray) -> list[np.ndarray]:
    """Hue, saturation and value planes in [0, 1]: skimage's rgb2hsv, about four times faster."""
    rgb = patches.astype(np.int16)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = np.maximum(np.maximum(red, green), blue)
    delta = value - np.minimum(np.minimum(red, green), blue)
    red_is_max = value == red
    green_is_max = value == green
    numerator = np.where(red_is_max, green - blue, np.where(green_is_max, blue - red, red - green))
    sector = np.where(red_is_max, 0, np.where(green_is_max, 2, 4))
    hue = ((numerator / np.maximum(delta, 1).astype(np.float32) + sector) / 6.0) % 1.0
    hue[delta == 0] = 0.0
    saturation = delta / np.maximum(value, 1).astype(np.float32)
    return [hue, saturation, value / np.float32(255.0)]


def _channel_moments(planes: list[np.ndarray]) -> np.ndarray:
    """Interleaved mean and standard deviation of each (N, H, W) plane: (N, 2 * len(planes))."""
    moments = []
    for plane in planes:
        # Contiguous rows make the reductions several times faster than strided channel views.
        rows = np.ascontiguousarray(plane, dtype=np.float64).reshape(plane.shape[0], -1)
        moments += [rows.mean(axis=1), rows.std(axis=1)]
    return np.stack(moments, axis=1)


def _texture(gray: np.ndarray) -> np.ndarray:
    """Uniform-LBP histogram and angle-averaged GLCM properties of one uint8 grayscale patch."""
    codes = local_binary_pattern(gray, LBP_POINTS, LBP_RADIUS, method="uniform")
    lbp_counts = np.bincount(codes.astype(np.int64).ravel(), minlength=LBP_BINS)[:LBP_BINS]
    lbp_histogram = lbp_counts / float(codes.size)

    quantised = (gray // (256 // GLCM_LEVELS)).astype(np.uint8)
    matrix = graycomatrix(
        quantised,
        distances=list(GLCM_DISTANCES),
        angles=list(GLCM_ANGLES),
        levels=GLCM_LEVELS,
        symmetric=True,
        normed=True,
    )
    # graycoprops returns (distances, angles); average over angles, keep distances apart.
    glcm = np.stack([graycoprops(matrix, prop).mean(axis=1) for prop in GLCM_PROPERTIES], axis=1)
    return np.concatenate([lbp_histogram, glcm.ravel()])


def _colour_and_texture(patches: np.ndarray) -> np.ndarray:
    """Unsanitised feature rows for one chunk of patches, in FEATURE_NAMES order."""
    histograms = _colour_histograms(patches)
    hsv_moments = _channel_moments(_rgb_to_hsv(patches))
    hed = rgb2hed(patches)
    hed_moments = _channel_moments([hed[..., channel] for channel in range(3)])
    gray = np.round(rgb2gray(patches) * 255.0).astype(np.uint8)
    texture = np.stack([_texture(single) for single in gray])
    return np.concatenate([histograms, hsv_moments, hed_moments, texture], axis=1)


def patch_features(patches: np.ndarray | PatchArray) -> np.ndarray:
    """Colour and texture features of uint8 RGB patches (N, H, W, 3) as float32 (N, F)."""
    _check_patches(patches)
    if patches.shape[0] == 0:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    # Small chunks keep the float copies of the colour conversions in cache and memory low.
    features = np.concatenate(
        [_colour_and_texture(patches[start : start + CHUNK_SIZE]) for start in range(0, patches.shape[0], CHUNK_SIZE)]
    )
    # GLCM correlation is undefined on a flat patch; 0 keeps the row usable.
    return np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def fit_feature_classifier(features: np.ndarray, labels: np.ndarray, seed: int) -> Pipeline:
    """Standardise the features and fit a class-balanced logistic regression."""
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (N, F), got shape {features.shape}")
    if labels.ndim != 1 or len(labels) != len(features):
        raise ValueError(
            f"labels must be 1-D with one entry per feature row ({len(features)}), got shape {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers 0..K-1, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be integers 0..K-1, got the negative label {labels.min()}")
    present = np.unique(labels)
    if present.size < 2:
        raise PathcnnError(
            f"the feature classifier needs at least two classes in its training labels, "
            f"found only {present.tolist()}; check the split or the label mapping"
        )
    model = Pipeline(
        [
            ("scaler", StandardScaler()),
            (
                "classifier",
                LogisticRegression(max_iter=2000, C=1.0, class_weight="balanced", random_state=seed),
            ),
        ]
    )
    model.fit(features, labels)
    return model


def predict_feature_classifier(model: Pipeline, features: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Class probabilities (N, K), column k for label k.

    K is n_classes, or else the largest label seen in training plus one; labels absent from
    training get probability 0, so columns stay aligned with label values.
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (N, F), got shape {features.shape}")
    classes = np.asarray(model.classes_, dtype=np.int64)
    column_count = int(classes.max()) + 1 if n_classes is None else n_classes
    if column_count <= int(classes.max()):
        raise ValueError(f"n_classes={n_classes} is too small for the trained labels {classes.tolist()}")
    probabilities = np.zeros((len(features), column_count), dtype=np.float64)
    if len(features):
        probabilities[:, classes] = model.predict_proba(features)
    return probabilities


def set_features(sets: Mapping[str, PatchSet]) -> dict[str, np.ndarray]:
    """Feature rows of every part (an empty part gets an empty matrix)."""
    return {
        part: patch_features(patch_set.patches) if len(patch_set) else np.zeros((0, len(FEATURE_NAMES)), np.float32)
        for part, patch_set in sets.items()
    }


def fit_and_evaluate(
    features: Mapping[str, np.ndarray], sets: Mapping[str, PatchSet], class_names: tuple[str, ...], seed: int
) -> Evaluation:
    """Fit the feature classifier on the training part and score every part like the CNN."""
    classifier = fit_feature_classifier(features["train"], sets["train"].labels, seed)
    probabilities = {
        part: predict_feature_classifier(classifier, rows, len(class_names)) for part, rows in features.items()
    }
    return evaluate_probabilities(probabilities, sets, class_names)
