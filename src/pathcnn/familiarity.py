"""How familiar a patch is to a model: distances to its training patches in stain space and in the CNN's embedding.

Two views, because they catch different failures (results/familiarity/<model>/metrics.json measures each):
- stain: the direction of a patch's mean optical density, its colour saturation and the shares of
  haematoxylin, eosin and DAB (scikit-image's HED colour deconvolution). A greyscale scan or a non-tissue
  photograph sits far from H&E here whatever the CNN makes of it. The reference holds the training patches
  and stain-jittered copies of them (the variation the CNN was trained to accept), as a Gaussian with a
  shrunk (Ledoit-Wolf) covariance; the distance is Mahalanobis;
- embedding: the CNN's penultimate layer (`dense`), where a restained, blurred or compressed patch, another
  magnification or another texture moves away from every training patch. The distance is the mean
  distance to the k nearest training patches (standardised), which follows the clusters each image forms.

A patch's score is the larger of the two distances, each divided by its scale (the 95th percentile of
held-out in-distribution distances), so one threshold applies to both. The familiarity stage fits the
scales and the threshold on images held out one at a time; predict applies them.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

STAIN_FEATURES: tuple[str, ...] = (
    "density_red",
    "density_green",
    "density_blue",
    "saturation",
    "haematoxylin_share",
    "eosin_share",
    "dab_share",
)
EMBEDDING_LAYER = "dense"  # models.make_model's penultimate layer
NEIGHBOURS = 5
_CHUNK = 256


def stain_features(patches: np.ndarray) -> np.ndarray:
    """(N, 7) float64: unit direction of the mean optical density, mean saturation, H, E and DAB shares."""
    from skimage.color import rgb2hed

    features = np.zeros((len(patches), len(STAIN_FEATURES)), dtype=np.float64)
    for start in range(0, len(patches), _CHUNK):
        chunk = np.asarray(patches[start : start + _CHUNK])
        values = chunk.astype(np.float64)
        density = (-np.log10(np.maximum(values, 1.0) / 255.0)).mean(axis=(1, 2))
        direction = density / np.maximum(np.linalg.norm(density, axis=1, keepdims=True), 1e-6)
        high, low = values.max(axis=-1), values.min(axis=-1)
        saturation = ((high - low) / np.maximum(high, 1.0)).mean(axis=(1, 2))
        stains = np.maximum(rgb2hed(chunk), 0.0).mean(axis=(1, 2))  # H, E, DAB concentrations
        shares = stains / np.maximum(stains.sum(axis=1, keepdims=True), 1e-9)
        features[start : start + len(chunk)] = np.column_stack([direction, saturation, shares])
    return features


def stain_jittered(patches: np.ndarray, strength: float, seed: int) -> np.ndarray:
    """The patches with the training's HED stain jitter (training.stain_jitter's formula, in NumPy)."""
    from pathcnn.training import HED_FROM_RGB, RGB_FROM_HED

    generator = np.random.default_rng(seed)
    density = -np.log((patches.astype(np.float32) + 1.0) / 256.0)
    stains = density @ HED_FROM_RGB
    count = len(patches)
    scale = generator.uniform(1.0 - strength, 1.0 + strength, (count, 1, 1, 3))
    shift = generator.uniform(-strength, strength, (count, 1, 1, 3)) * 0.1
    return to_uint8(256.0 * np.exp(-((stains * scale + shift) @ RGB_FROM_HED)) - 1.0)


def embedding_model(model: Any) -> Any:
    """The model with two outputs: the penultimate layer's activations and the class probabilities."""
    import keras

    return keras.Model(model.inputs, [model.get_layer(EMBEDDING_LAYER).output, model.outputs[0]])


def embed(two_outputs: Any, patches: np.ndarray, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, probabilities) of uint8 patches through embedding_model's result, a batch at a time."""
    width = two_outputs.outputs[0].shape[-1]
    classes = two_outputs.outputs[1].shape[-1]
    embeddings = np.zeros((len(patches), width), dtype=np.float32)
    probabilities = np.zeros((len(patches), classes), dtype=np.float32)
    for start in range(0, len(patches), batch_size):
        batch = np.asarray(patches[start : start + batch_size], dtype=np.float32)
        found, probs = two_outputs.predict_on_batch(batch)
        embeddings[start : start + len(batch)] = np.asarray(found, dtype=np.float32)
        probabilities[start : start + len(batch)] = np.asarray(probs, dtype=np.float32)
    return embeddings, probabilities


@dataclass(frozen=True)
class Gaussian:
    """A mean and a precision matrix (the inverse of a shrunk covariance)."""

    mean: np.ndarray
    precision: np.ndarray

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of features."""
        centred = np.asarray(features, dtype=np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, self.precision, centred), 0.0))


def fit_gaussian(features: np.ndarray) -> Gaussian:
    """Mean and Ledoit-Wolf shrunk covariance (well conditioned even with fewer patches than dimensions)."""
    from sklearn.covariance import LedoitWolf

    features = np.asarray(features, dtype=np.float64)
    if len(features) < 2:
        raise ValueError(f"a reference needs at least 2 patches, got {len(features)}")
    fitted = LedoitWolf().fit(features)
    return Gaussian(fitted.location_, fitted.precision_)


@dataclass(frozen=True)
class Neighbours:
    """Standardised reference points; a point's distance is its mean distance to the k nearest of them."""

    points: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    k: int = NEIGHBOURS

    @cached_property
    def finder(self) -> Any:
        """The search index over the points, built once (predict queries it band by band)."""
        from sklearn.neighbors import NearestNeighbors

        return NearestNeighbors(n_neighbors=min(self.k, len(self.points))).fit(self.points)

    def distance(self, features: np.ndarray) -> np.ndarray:
        if len(features) == 0:
            return np.zeros(0)
        found, _ = self.finder.kneighbors((np.asarray(features, dtype=np.float64) - self.mean) / self.std)
        return found.mean(axis=1)


def fit_neighbours(features: np.ndarray, k: int = NEIGHBOURS) -> Neighbours:
    """The reference points, standardised per dimension (a dimension that never varies keeps scale 1)."""
    features = np.asarray(features, dtype=np.float64)
    if len(features) < 2:
        raise ValueError(f"a reference needs at least 2 patches, got {len(features)}")
    mean, std = features.mean(axis=0), features.std(axis=0)
    std = np.where(std > 1e-9, std, 1.0)
    return Neighbours((features - mean) / std, mean, std, k)


@dataclass(frozen=True)
class Reference:
    """What predict needs to score patches: both views' references, their scales, the threshold, the image rule."""

    stain: Gaussian
    embedding: Neighbours
    stain_scale: float
    embedding_scale: float
    threshold: float
    image_share: float  # an image with more than this share of unfamiliar tissue patches is unfamiliar
    false_alarm_rate: float  # measured on held-out in-distribution patches (cross-fitted), for the record

    def parts(self, stain: np.ndarray, embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each view's scaled distance (1.0 = the 95th percentile of held-out in-distribution patches)."""
        return self.stain.distance(stain) / self.stain_scale, self.embedding.distance(embedding) / self.embedding_scale

    def score(self, stain: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        """The unfamiliarity score of each patch: the larger scaled distance."""
        return np.maximum(*self.parts(stain, embedding))

    def save(self, path: Any) -> None:
        """An .npz of the arrays and the settings (written through artifacts.atomic_path by the caller)."""
        settings = {
            "stain_features": list(STAIN_FEATURES),
            "embedding_layer": EMBEDDING_LAYER,
            "neighbours": self.embedding.k,
            "stain_scale": self.stain_scale,
            "embedding_scale": self.embedding_scale,
            "threshold": self.threshold,
            "image_share": self.image_share,
            "false_alarm_rate": self.false_alarm_rate,
        }
        with open(path, "wb") as handle:
            np.savez(
                handle,
                settings=np.array(json.dumps(settings, sort_keys=True)),
                stain_mean=self.stain.mean,
                stain_precision=self.stain.precision,
                embedding_points=self.embedding.points,
                embedding_mean=self.embedding.mean,
                embedding_std=self.embedding.std,
            )

    @classmethod
    def load(cls, path: Any) -> Reference | None:
        """The reference, or None when the stage could not calibrate one (save_unavailable)."""
        with np.load(path, allow_pickle=False) as arrays:
            settings = json.loads(str(arrays["settings"]))
            if "not_possible" in settings:
                return None
            if settings.get("stain_features") != list(STAIN_FEATURES):
                raise ValueError("written by another version of pathcnn (its stain features differ)")
            return cls(
                stain=Gaussian(arrays["stain_mean"], arrays["stain_precision"]),
                embedding=Neighbours(
                    arrays["embedding_points"],
                    arrays["embedding_mean"],
                    arrays["embedding_std"],
                    settings["neighbours"],
                ),
                stain_scale=float(settings["stain_scale"]),
                embedding_scale=float(settings["embedding_scale"]),
                threshold=float(settings["threshold"]),
                image_share=float(settings["image_share"]),
                false_alarm_rate=float(settings["false_alarm_rate"]),
            )


def save_unavailable(path: Any, reason: str) -> None:
    """A reference file that says why there is none (predict then skips the check and says so)."""
    with open(path, "wb") as handle:
        np.savez(handle, settings=np.array(json.dumps({"not_possible": reason})))


# ---------------------------------------------------------------- transformations for the evaluation set


def to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def restain_dab(patches: np.ndarray) -> np.ndarray:
    """The patches re-stained into an immunohistochemistry look: eosin's concentration moved to DAB (brown)."""
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(patches)
    swapped = np.stack([hed[..., 0], np.zeros_like(hed[..., 1]), hed[..., 1]], axis=-1)
    return to_uint8(hed2rgb(swapped) * 255.0)


def greyscale(patches: np.ndarray) -> np.ndarray:
    """Luminance (ITU-R 601) in all three channels."""
    grey = patches.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return to_uint8(np.repeat(grey[..., None], 3, axis=-1))


def blur(patches: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """A heavy Gaussian blur (out of focus)."""
    from scipy.ndimage import gaussian_filter

    return to_uint8(gaussian_filter(patches.astype(np.float32), sigma=(0, sigma, sigma, 0)))


def jpeg(patches: np.ndarray, quality: int = 5) -> np.ndarray:
    """Strong JPEG compression, patch by patch."""
    from PIL import Image

    result = np.empty_like(patches)
    for index, patch in enumerate(patches):
        buffer = io.BytesIO()
        Image.fromarray(patch).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            result[index] = np.asarray(decoded.convert("RGB"))
    return result


TRANSFORMS = {"restained_dab": restain_dab, "greyscale": greyscale, "blur": blur, "jpeg": jpeg}


def rescaled(image: np.ndarray, factor: float) -> np.ndarray:
    """The image resized by factor (0.5: each patch then covers twice the width of tissue, another magnification)."""
    from PIL import Image

    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


TEXTURES = ("astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel", "moon", "rocket")


def texture_images() -> dict[str, np.ndarray]:
    """Non-tissue pictures shipped with scikit-image (photographs and textures), as RGB uint8."""
    from skimage import data

    images = {}
    for name in TEXTURES:
        picture = getattr(data, name)()
        images[name] = np.repeat(picture[..., None], 3, axis=-1) if picture.ndim == 2 else picture[..., :3]
    return images


def ihc_sample(settings: Any) -> np.ndarray:
    """The tissue patches of scikit-image's immunohistochemistry sample (DAB and haematoxylin, a real slide)."""
    from skimage import data

    from pathcnn.tiling import tile_image

    tiles = tile_image(
        data.immunohistochemistry(),
        settings.patch_size,
        settings.stride,
        settings.min_tissue_fraction,
        settings.tissue_min_saturation,
    )
    return tiles.patches


def all_tiles(image: np.ndarray, size: int) -> np.ndarray:
    """Every whole size x size tile of an image, row by row (no tissue filter)."""
    rows, cols = image.shape[0] // size, image.shape[1] // size
    tiles = image[: rows * size, : cols * size].reshape(rows, size, cols, size, 3).swapaxes(1, 2)
    return np.ascontiguousarray(tiles.reshape(rows * cols, size, size, 3))


def auroc(in_distribution: np.ndarray, shifted: np.ndarray) -> float | None:
    """Area under the ROC curve of the score separating shifted patches from in-distribution ones."""
    from sklearn.metrics import roc_auc_score

    if len(in_distribution) == 0 or len(shifted) == 0:
        return None
    labels = np.r_[np.zeros(len(in_distribution)), np.ones(len(shifted))]
    return float(roc_auc_score(labels, np.r_[in_distribution, shifted]))


# ---------------------------------------------------------------- calibration on held-out images


@dataclass(frozen=True)
class Distances:
    """Both views' Mahalanobis distances of a set of patches (one image, or one transformation of it)."""

    stain: np.ndarray
    embedding: np.ndarray

    def __len__(self) -> int:
        return len(self.stain)

    def scored(self, stain_scale: float, embedding_scale: float) -> np.ndarray:
        """The unfamiliarity score of each patch: the larger of the two distances, each divided by its scale."""
        return np.maximum(self.stain / stain_scale, self.embedding / embedding_scale)


@dataclass(frozen=True)
class Calibration:
    """Scales and threshold fitted on held-out in-distribution images, with the false alarms they give."""

    stain_scale: float
    embedding_scale: float
    threshold: float
    false_alarm_rate: float  # cross-fitted: each image judged by scales and threshold fitted on the others only
    per_image_crossfit: dict[str, float]  # each held-out image's cross-fitted share of flagged patches
    per_image: dict[str, float]  # each held-out image's share of flagged patches at the final threshold

    @property
    def false_alarm_rate_max(self) -> float:
        return max(self.per_image_crossfit.values())

    def score(self, distances: Distances) -> np.ndarray:
        return distances.scored(self.stain_scale, self.embedding_scale)


def _scales_and_threshold(held_out: list[Distances], target: float) -> tuple[float, float, float]:
    """Each view's 95th percentile of the held-out distances, then the (1 - target) quantile of the scores."""
    pooled = Distances(np.concatenate([d.stain for d in held_out]), np.concatenate([d.embedding for d in held_out]))
    stain_scale = float(np.quantile(pooled.stain, 0.95)) or 1.0
    embedding_scale = float(np.quantile(pooled.embedding, 0.95)) or 1.0
    scores = pooled.scored(stain_scale, embedding_scale)
    return stain_scale, embedding_scale, float(np.quantile(scores, 1.0 - target))


def calibrate(held_out: dict[str, Distances], target: float) -> Calibration:
    """The threshold at which `target` of the held-out images' patches are flagged, and how that holds up.

    The scales and threshold are fitted on all held-out images together (so the pooled in-sample rate is
    `target` by construction). The honest rate is cross-fitted: each image is judged by scales and a threshold
    fitted on the other images' held-out patches only, as a new image would be.
    """
    if len(held_out) < 2:
        raise ValueError("calibration needs at least 2 held-out images")
    stain_scale, embedding_scale, threshold = _scales_and_threshold(list(held_out.values()), target)
    crossfit: dict[str, float] = {}
    flagged = 0
    for name, distances in held_out.items():
        others = [d for other, d in held_out.items() if other != name]
        s_scale, e_scale, other_threshold = _scales_and_threshold(others, target)
        scores = distances.scored(s_scale, e_scale)
        flagged += int((scores > other_threshold).sum())
        crossfit[name] = flagged_share(scores, other_threshold)
    total = sum(len(d) for d in held_out.values())
    per_image = {name: flagged_share(d.scored(stain_scale, embedding_scale), threshold) for name, d in held_out.items()}
    return Calibration(stain_scale, embedding_scale, threshold, flagged / total, crossfit, per_image)


def flagged_share(scores: np.ndarray, threshold: float) -> float:
    return float((scores > threshold).mean()) if len(scores) else 0.0


def detection(
    by_image: dict[str, Distances],
    held_out: dict[str, Distances],
    calibration: Calibration,
    image_share: float,
) -> dict[str, Any]:
    """AUROC against the held-out in-distribution patches (combined and per view), detection at the threshold."""
    scores = {image: calibration.score(d) for image, d in by_image.items()}
    pooled = np.concatenate(list(scores.values()))
    in_distribution = np.concatenate([calibration.score(d) for d in held_out.values()])
    return {
        "patches": int(len(pooled)),
        "auroc": auroc(in_distribution, pooled),
        "auroc_stain": auroc(
            np.concatenate([d.stain for d in held_out.values()]), np.concatenate([d.stain for d in by_image.values()])
        ),
        "auroc_embedding": auroc(
            np.concatenate([d.embedding for d in held_out.values()]),
            np.concatenate([d.embedding for d in by_image.values()]),
        ),
        "detection_rate": flagged_share(pooled, calibration.threshold),
        "images": len(scores),
        "images_flagged": sum(flagged_share(s, calibration.threshold) > image_share for s in scores.values()),
    }
