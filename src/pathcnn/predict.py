"""Classify new H&E images with a trained model: per image a patch CSV, an image-level call and a heatmap.

Images are tiled exactly as in training (same patch size, stride and tissue filter); background patches are
"not classified". The image is tiled and predicted in bands of patch rows, so memory stays bounded by one
band of patches plus the decoded image, whatever the image size.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pathcnn.appearance import image_appearance, patch_colour_stats, unfamiliar
from pathcnn.artifacts import atomic_path, read_json, write_csv, write_json
from pathcnn.console import progress, say
from pathcnn.errors import ImageError, PathcnnError
from pathcnn.params import PatchesParams, load_params
from pathcnn.tiling import Tiles, greyscale_with_content, grid_shape, tile_image

NOT_CLASSIFIED = "not classified"
NO_TISSUE = "no tissue"
UNCERTAIN = "uncertain"  # the image call when most of its tissue is unlike the training images
FEW_PATCHES = 5  # fewer tissue patches than this: the call rests on too little tissue to trust
_RUN_PATCH_KEYS = ("patch_size", "stride", "min_tissue_fraction", "tissue_min_saturation")
_RENAMED_RUN_PATCH_KEYS = {"size": "patch_size"}  # logged as patches.size by runs before the rename


@dataclass(frozen=True)
class Predictor:
    """A loaded model with everything needed to use it as it was trained."""

    model: Any
    class_names: tuple[str, ...]
    patches: PatchesParams
    reference: dict[str, Any] | None  # training appearance (appearance.training_appearance), None if unknown
    source: str
    stain_normalization: str = "none"  # train.stain_normalization the model was trained with (pathcnn.stain)
    # What `source` resolved to: the registered version and its training run, or the model file's MD5.
    resolved: dict[str, str | None] = field(default_factory=dict)
    # The familiarity stage's reference (models/<model>.familiarity.npz), None if the model has none.
    familiarity: Any = None
    # The model with its penultimate layer as a second output, built once when there is a reference.
    embedder: Any = None


@dataclass(frozen=True)
class PatchPredictions:
    """Every grid cell of one image, with class probabilities for the kept (tissue) cells."""

    rows: np.ndarray  # (N,)
    cols: np.ndarray  # (N,)
    tissue_fraction: np.ndarray  # (N,)
    kept: np.ndarray  # (N,) bool
    probabilities: np.ndarray  # (K, classes) for the kept cells, in grid order
    colour_stats: np.ndarray  # (K, 6) appearance.patch_colour_stats of the kept patches
    # (K,) familiarity score (1.0 and above: past the calibrated threshold when it is 1) and which view led
    # it (True: stain); NaN and False without a familiarity reference.
    unfamiliar_score: np.ndarray
    stain_led: np.ndarray


def band_height(grid_cols: int, batch_size: int) -> int:
    """Patch rows per band: about four batches of patches, at least one row."""
    return max(1, (4 * batch_size) // max(grid_cols, 1))


def tile_bands(image: np.ndarray, settings: PatchesParams, rows_per_band: int) -> Iterator[tuple[int, Tiles]]:
    """Tile the image a band of patch rows at a time; yields (first grid row, tiles of the band).

    Each band is cut from pixel row first_row * stride, so its grid is exactly the whole image's grid.
    """
    size, stride = settings.patch_size, settings.stride
    grid_rows, _ = grid_shape(image.shape[0], image.shape[1], size, stride)
    for first in range(0, grid_rows, rows_per_band):
        last = min(first + rows_per_band, grid_rows)
        band = image[first * stride : (last - 1) * stride + size]
        yield first, tile_image(band, size, stride, settings.min_tissue_fraction, settings.tissue_min_saturation)


def predict_patches(image: np.ndarray, predictor: Predictor, batch_size: int, label: str = "") -> PatchPredictions:
    """Tile and classify one RGB uint8 image band by band."""
    from pathcnn.familiarity import embed, stain_features
    from pathcnn.training import predict_probabilities

    settings = predictor.patches
    grid_rows, grid_cols = grid_shape(image.shape[0], image.shape[1], settings.patch_size, settings.stride)
    rows_per_band = band_height(grid_cols, batch_size)
    keys = ("rows", "cols", "tissue", "kept", "probs", "colour", "score", "stain")
    parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    normalize = _stain_normalizer(image, predictor, rows_per_band)
    bands = tile_bands(image, settings, rows_per_band)
    for first, tiles in progress(bands, f"predict {label}".strip(), total=-(-grid_rows // rows_per_band)):
        parts["rows"].append(tiles.rows + first)
        parts["cols"].append(tiles.cols)
        parts["tissue"].append(tiles.tissue_fraction)
        parts["kept"].append(tiles.kept)
        parts["colour"].append(patch_colour_stats(tiles.patches))
        if predictor.familiarity is None:
            parts["probs"].append(predict_probabilities(predictor.model, normalize(tiles.patches), batch_size))
            parts["score"].append(np.full(len(tiles.patches), np.nan))
            parts["stain"].append(np.zeros(len(tiles.patches), bool))
            continue
        embeddings, probabilities = embed(predictor.embedder, normalize(tiles.patches), batch_size)
        stain_part, embedding_part = predictor.familiarity.parts(stain_features(tiles.patches), embeddings)
        parts["probs"].append(probabilities)
        parts["score"].append(np.maximum(stain_part, embedding_part) / predictor.familiarity.threshold)
        parts["stain"].append(stain_part >= embedding_part)
    class_count = len(predictor.class_names)

    def joined(key: str, empty: np.ndarray) -> np.ndarray:
        return np.concatenate(parts[key]) if parts[key] else empty

    return PatchPredictions(
        rows=joined("rows", np.zeros(0, np.int64)),
        cols=joined("cols", np.zeros(0, np.int64)),
        tissue_fraction=joined("tissue", np.zeros(0, np.float32)),
        kept=joined("kept", np.zeros(0, bool)),
        probabilities=joined("probs", np.zeros((0, class_count), np.float32)),
        colour_stats=joined("colour", np.zeros((0, 6), np.float32)),
        unfamiliar_score=joined("score", np.zeros(0)),
        stain_led=joined("stain", np.zeros(0, bool)),
    )


def _stain_normalizer(image: np.ndarray, predictor: Predictor, rows_per_band: int) -> Any:
    """The colour preprocessing the model was trained with, using this image's statistics (one extra pass)."""
    method = predictor.stain_normalization
    if method == "none":
        return lambda patches: patches
    if method != "reinhard":
        raise PathcnnError(f"{predictor.source}: unknown stain normalisation {method!r}; update pathcnn")
    from skimage.color import rgb2lab

    from pathcnn.stain import reinhard

    count, total, squares = 0, np.zeros(3), np.zeros(3)
    for _, tiles in tile_bands(image, predictor.patches, rows_per_band):
        for start in range(0, len(tiles.patches), 64):  # small chunks: LAB is float64
            lab = rgb2lab(tiles.patches[start : start + 64]).reshape(-1, 3)
            count, total, squares = count + len(lab), total + lab.sum(axis=0), squares + (lab**2).sum(axis=0)
    if count == 0:
        return lambda patches: patches
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return lambda patches: reinhard(patches, source=(mean, std)) if len(patches) else patches


def patch_table(predictions: PatchPredictions, class_names: Sequence[str]) -> pd.DataFrame:
    """One row per grid cell: row, col, tissue_fraction, prob_<class>... (empty when not classified), predicted."""
    table = pd.DataFrame(
        {
            "row": predictions.rows,
            "col": predictions.cols,
            "tissue_fraction": np.round(predictions.tissue_fraction.astype(np.float64), 4),
        }
    )
    predicted = np.full(len(table), NOT_CLASSIFIED, dtype=object)
    kept = predictions.kept
    for index, name in enumerate(class_names):
        column = np.full(len(table), np.nan)
        column[kept] = np.round(predictions.probabilities[:, index].astype(np.float64), 4)
        table[f"prob_{name}"] = column
    if kept.any():
        predicted[kept] = np.asarray(class_names, dtype=object)[predictions.probabilities.argmax(axis=1)]
    table["predicted"] = predicted
    score = np.full(len(table), np.nan)
    score[kept] = np.round(predictions.unfamiliar_score, 4)
    table["unfamiliar_score"] = score  # scaled so that above 1 is unfamiliar; empty without a reference
    unfamiliar = np.full(len(table), "", dtype=object)
    unfamiliar[kept] = np.where(predictions.unfamiliar_score > 1.0, "yes", "no")
    table["unfamiliar"] = unfamiliar if np.isfinite(predictions.unfamiliar_score).any() else ""
    return table


def patches_word(count: int) -> str:
    return f"{count} patch" if count == 1 else f"{count} patches"


def unfamiliar_reasons(stain_led: np.ndarray, flagged: np.ndarray) -> list[str]:
    """Why patches were flagged: which view saw them as unlike training (the view that flagged more first)."""
    stain_count = int((flagged & stain_led).sum())
    embedding_count = int(flagged.sum()) - stain_count
    found = []
    if stain_count:
        found.append(
            (
                stain_count,
                f"stain: {patches_word(stain_count)} whose haematoxylin/eosin/DAB make-up is unlike the training "
                "H&E (another stain, no colour, or not tissue?)",
            )
        )
    if embedding_count:
        found.append(
            (
                embedding_count,
                f"appearance to the CNN: {patches_word(embedding_count)} unlike any training patch (blur, "
                "compression, another magnification or another tissue?)",
            )
        )
    return [text for _, text in sorted(found, key=lambda item: -item[0])]


def familiarity_finding(predictions: PatchPredictions, image_share: float | None) -> dict[str, Any]:
    """unfamiliar_patch_share, image_unfamiliar and the reasons (None, None, [] without a reference or tissue)."""
    scores = predictions.unfamiliar_score
    if image_share is None or len(scores) == 0 or not np.isfinite(scores).all():
        return {"unfamiliar_patch_share": None, "image_unfamiliar": None, "unfamiliar_reasons": []}
    flagged = scores > 1.0
    share = float(flagged.mean())
    return {
        "unfamiliar_patch_share": round(share, 4),
        "image_unfamiliar": share > image_share,
        "unfamiliar_reasons": unfamiliar_reasons(predictions.stain_led, flagged),
    }


def image_call(
    predictions: PatchPredictions,
    class_names: Sequence[str],
    reference: dict[str, Any] | None,
    image_share: float | None = None,
    no_colour: bool = False,
) -> dict[str, Any]:
    """The image-level call (class of highest mean probability), vote shares, patch counts and warnings.

    With a familiarity reference (image_share given), an image whose share of unfamiliar tissue patches
    exceeds image_share is called `uncertain`; the class it would get is kept as call_if_familiar. A greyscale
    image with content (no_colour) is `uncertain` too: it has no stain colour to find tissue by, let alone judge it.
    """
    used, total = int(predictions.kept.sum()), len(predictions.kept)
    warnings: list[str] = []
    appearance = image_appearance(predictions.colour_stats, used / total if total else 0.0)
    call: dict[str, Any] = {"patches_total": total, "patches_used": used, "appearance": appearance}
    call.update(familiarity_finding(predictions, image_share))
    if used == 0:
        if total == 0:
            warnings.append("image is smaller than one patch; nothing to classify")
        else:
            # Tissue is found by the stain's colour: say why nothing was found, and how unlike training that is.
            warnings.append("no patch has enough stain colour to count as tissue (background only, or greyscale?)")
            if reference is not None:
                warnings.extend(unfamiliar(appearance, reference))
        if no_colour:
            reason = (
                "no colour: the image is greyscale, and H&E tissue is found and judged by its stain colours "
                "(give the colour scan)"
            )
            call.update(image_unfamiliar=True, unfamiliar_reasons=[reason])
            warnings = [f"the call is `{UNCERTAIN}`: {reason}"]
        call.update(
            call=UNCERTAIN if no_colour else NO_TISSUE,
            call_if_familiar=None,
            mean_probability={},
            vote_share={},
            warnings=warnings,
        )
        return call
    mean = predictions.probabilities.mean(axis=0)
    votes = np.bincount(predictions.probabilities.argmax(axis=1), minlength=len(class_names)) / used
    if used < FEW_PATCHES:
        warnings.append(f"only {used} tissue patches; the call rests on little tissue")
    if reference is not None:
        warnings.extend(unfamiliar(appearance, reference))
    best = class_names[int(mean.argmax())]
    if call["image_unfamiliar"]:
        warnings.append(
            f"{call['unfamiliar_patch_share']:.0%} of the tissue patches are unlike the training images (more than "
            f"{image_share:.0%}): the call is `{UNCERTAIN}`, not {best}; the per-patch classes are in the CSV"
        )
        warnings.extend(call["unfamiliar_reasons"])
    call.update(
        call=UNCERTAIN if call["image_unfamiliar"] else best,
        call_if_familiar=best,
        mean_probability={name: round(float(p), 4) for name, p in zip(class_names, mean, strict=True)},
        vote_share={name: round(float(v), 4) for name, v in zip(class_names, votes, strict=True)},
        warnings=warnings,
    )
    return call


def heatmap_canvas(image: np.ndarray, scale: int) -> np.ndarray:
    """A writable copy of the image, shrunk by a whole factor by taking every scale-th pixel."""
    return np.array(image[::scale, ::scale], copy=True) if scale > 1 else image.copy()


def write_heatmap(
    canvas: np.ndarray,
    predictions: PatchPredictions,
    predictor: Predictor,
    scale: int,
    path: Path,
    image_size: tuple[int, int],
) -> None:
    """Tint the classified patches on the canvas, hatch what the grid misses, add the legend, save a PNG.

    image_size is the (height, width) of the full image the canvas was shrunk from by `scale`.
    """
    from PIL import Image

    from pathcnn.heatmaps import grid_extent, hatch_margins, tint_patches, with_legend

    kept = predictions.kept
    settings = predictor.patches
    tint_patches(
        canvas,
        predictions.rows[kept],
        predictions.cols[kept],
        predictions.probabilities.argmax(axis=1),
        predictions.probabilities.max(axis=1),
        len(predictor.class_names),
        settings.patch_size,
        settings.stride,
        scale,
        unfamiliar=predictions.unfamiliar_score > 1.0,
    )
    covered_height, covered_width = grid_extent(*image_size, settings.patch_size, settings.stride)
    hatch_margins(canvas, covered_height // scale, covered_width // scale)
    picture = with_legend(
        Image.fromarray(canvas),
        predictor.class_names,
        f"model {predictor.source}",
        familiarity=predictor.familiarity is not None,
    )
    with atomic_path(path) as temporary:
        picture.save(temporary, format="PNG")


def predict_file(path: Path, predictor: Predictor, out_dir: Path, batch_size: int, max_pixels: int) -> dict[str, Any]:
    """Predict one image file; write <stem>_patches.csv, <stem>_heatmap.png and <stem>_call.json into out_dir."""
    from pathcnn.heatmaps import heatmap_scale
    from pathcnn.images import load_rgb

    image = load_rgb(path, max_pixels=max_pixels)
    height, width = image.shape[:2]
    scale = heatmap_scale(height, width)
    canvas = heatmap_canvas(image, scale)
    predictions = predict_patches(image, predictor, batch_size, path.name)
    image_share = predictor.familiarity.image_share if predictor.familiarity is not None else None
    no_colour = not predictions.kept.any() and greyscale_with_content(image)
    del image  # the canvas is all the heatmap needs
    stem = path.stem
    outputs = {
        "patches": out_dir / f"{stem}_patches.csv",
        "heatmap": out_dir / f"{stem}_heatmap.png",
        "call": out_dir / f"{stem}_call.json",
    }
    write_csv(outputs["patches"], patch_table(predictions, predictor.class_names))
    write_heatmap(canvas, predictions, predictor, scale, outputs["heatmap"], (height, width))
    call = {
        "image": str(path),
        "width": width,
        "height": height,
        "model": predictor.source,
        **predictor.resolved,
        "classes": list(predictor.class_names),
        "patch_size": predictor.patches.patch_size,
        "patch_stride": predictor.patches.stride,
        **image_call(predictions, predictor.class_names, predictor.reference, image_share, no_colour),
        "appearance_checked": predictor.reference is not None,
        # Whether the familiarity check scored this image's patches (not when it has no tissue patch).
        "familiarity_checked": predictor.familiarity is not None and bool(predictions.kept.any()),
        "heatmap": outputs["heatmap"].name,
        "heatmap_scale": scale,
        "files": {key: value.name for key, value in outputs.items()},
    }
    write_json(outputs["call"], call)
    readable_by_others(outputs.values())
    return call


def readable_by_others(paths: Any) -> None:
    """Give the files the permissions the umask allows (atomic writes create them private, mode 600)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in paths:
        os.chmod(path, 0o666 & ~umask)


def summary_line(path: Path, call: dict[str, Any]) -> str:
    """One line per image: the call, its support and the heatmap."""
    if call["call"] == NO_TISSUE:
        return f"{path.name}: {NO_TISSUE} (0 of {call['patches_total']} patches are tissue) -> {call['heatmap']}"
    if call["call"] == UNCERTAIN and call["call_if_familiar"] is None:
        return (
            f"{path.name}: {UNCERTAIN} (greyscale: no stain colour to find or judge H&E tissue by) -> {call['heatmap']}"
        )
    if call["call"] == UNCERTAIN:
        best = call["call_if_familiar"]
        return (
            f"{path.name}: {UNCERTAIN} ({call['unfamiliar_patch_share']:.0%} of {call['patches_used']} tissue patches "
            f"unlike the training images; it would be {best}, mean probability {call['mean_probability'][best]:.2f}) "
            f"-> {call['heatmap']}"
        )
    name = call["call"]
    return (
        f"{path.name}: {name} (mean probability {call['mean_probability'][name]:.2f}, "
        f"{call['vote_share'][name]:.0%} of {call['patches_used']} tissue patches) -> {call['heatmap']}"
    )


def _check_outputs(model: Any, class_names: tuple[str, ...], source: str) -> None:
    outputs = model.output_shape[-1]
    if outputs != len(class_names):
        raise PathcnnError(
            f"{source}: model has {outputs} outputs but its classes are {', '.join(class_names)}; "
            "pass the params.yaml it was trained with (--params)"
        )


def load_file_predictor(model_name: str, models_dir: Path, params_path: Path, stats_path: Path | None) -> Predictor:
    """The pipeline's <models-dir>/<model>.keras with its classes, tiling and training statistics.

    They come from the model card <model>.json the train stage writes beside the model, so predict works
    from any folder; a model without a card (an older train) takes them from params.yaml.
    """
    import keras

    path = models_dir / f"{model_name}.keras"
    if not path.is_file():
        raise PathcnnError(
            f"{path}: no such model; run `dvc repro train@{model_name}`, pass --models-dir or --model-uri"
        )
    if stats_path is not None and not stats_path.is_file():
        raise PathcnnError(f"{stats_path}: no such file (--stats); leave it out to use the model's own statistics")
    card_path = path.with_suffix(".json")
    if card_path.is_file():
        card = read_json(card_path)
        class_names = tuple(card["classes"])
        settings = PatchesParams.model_validate(card["patches"])
        reference = read_json(stats_path) if stats_path else card.get("training_stats")
        stain = card.get("stain_normalization", "none")
    else:
        params = load_params(params_path)
        class_names = params.model(model_name).classes
        settings = params.patches
        stats_path = stats_path or Path("results/train") / model_name / "training_stats.json"
        reference = read_json(stats_path) if stats_path.is_file() else None
        # The train stage records the stain normalisation it used (tuning may change it); else params.yaml's.
        configured = getattr(getattr(params.train, "stain_normalization", None), "value", "none")
        stain = (reference or {}).get("stain_normalization", configured)
    try:
        model = keras.saving.load_model(path)
    except (OSError, ValueError) as error:
        raise PathcnnError(f"{path}: cannot load the model ({error}); re-run `dvc repro train@{model_name}`") from None
    _check_outputs(model, class_names, str(path))
    resolved = {"model_md5": hashlib.md5(path.read_bytes()).hexdigest()}  # as dvc.lock records it
    familiarity, embedder = load_familiarity(path.with_suffix(".familiarity.npz"), model, model_name)
    return Predictor(model, class_names, settings, reference, path.name, stain, resolved, familiarity, embedder)


def load_familiarity(path: Path, model: Any, model_name: str) -> tuple[Any, Any]:
    """The familiarity stage's reference beside the model and the two-output model, or (None, None)."""
    if not path.is_file():
        return None, None
    from pathcnn.familiarity import Reference, embedding_model

    try:
        reference = Reference.load(path)
    except (OSError, ValueError, KeyError) as error:
        raise PathcnnError(f"{path}: unreadable ({error}); re-run `dvc repro familiarity@{model_name}`") from None
    if reference is None:  # the stage could not calibrate one (too few images); the note at the start says so
        return None, None
    return reference, embedding_model(model)


def load_registry_predictor(model_uri: str, params_path: Path) -> Predictor:
    """A model from the MLflow store, with the classes and tiling its training run logged."""
    from pathcnn import registry, tracking

    store = tracking.local_store_path()
    if store is not None and not store.is_file():
        raise PathcnnError(
            f"{model_uri}: no MLflow store at {store} (a clone restored from a DVC "
            "remote has no runs or registry); use --model <name> for the model file, or set MLFLOW_TRACKING_URI "
            "to the store or server that has the model"
        )
    run = registry.model_run(model_uri)
    if not run.params.get("classes"):
        raise PathcnnError(f"{model_uri}: its training run {run.run_id} logged no 'classes' param")
    class_names = tuple(run.params["classes"].split(","))
    base = load_params(params_path).patches if params_path.is_file() else PatchesParams()
    logged = {key: run.params[f"patches.{key}"] for key in _RUN_PATCH_KEYS if f"patches.{key}" in run.params}
    for old, new in _RENAMED_RUN_PATCH_KEYS.items():
        if f"patches.{old}" in run.params:
            logged.setdefault(new, run.params[f"patches.{old}"])
    try:
        settings = PatchesParams.model_validate({**base.model_dump(), **logged})
    except ValueError as error:
        raise PathcnnError(f"{model_uri}: patch params of run {run.run_id} are not valid ({error})") from None
    model = tracking.load_keras_model(model_uri)
    _check_outputs(model, class_names, model_uri)
    stain = run.params.get("train.stain_normalization", "none")
    resolved = {"model_version": run.version, "model_run_id": run.run_id}
    return Predictor(model, class_names, settings, run.training_stats, model_uri, stain, resolved)


def run(
    images: Sequence[Path],
    predictor: Predictor,
    out_dir: Path,
    batch_size: int = 256,
    max_pixels: int = 200_000_000,
) -> dict[Path, dict[str, Any]]:
    """Predict every image; an unreadable one is reported and skipped, and the command fails at the end."""
    stems: dict[str, Path] = {}
    for path in images:
        if path.stem in stems:
            raise PathcnnError(f"{path}: same file name as {stems[path.stem]}; outputs would overwrite each other")
        stems[path.stem] = path
    calls: dict[Path, dict[str, Any]] = {}
    failures: list[ImageError] = []
    for path in images:
        try:
            call = predict_file(path, predictor, out_dir, batch_size, max_pixels)
        except ImageError as error:
            if len(images) == 1:
                raise
            say(f"error: {error}")
            failures.append(error)
            continue
        if not calls and predictor.reference is None:
            say("note: no training statistics for this model; the check for unfamiliar images is skipped")
        if not calls and predictor.familiarity is None:
            say(
                "note: no familiarity reference for this model (models/<model>.familiarity.npz, written by "
                "`dvc repro familiarity@<model>`); images unlike the training images are not called uncertain"
            )
        calls[path] = call
        print(summary_line(path, call), flush=True)
        for warning in call["warnings"]:
            say(f"warning: {path.name}: {warning}")
    if failures:
        raise PathcnnError(f"{len(failures)} of {len(images)} images could not be read (their errors are above)")
    return calls


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of predict."""
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="JPEG, PNG, TIFF or WebP files")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="pipeline model name (loads <models-dir>/<model>.keras), e.g. model1")
    source.add_argument("--model-uri", help="MLflow model URI, e.g. models:/pathcnn-model1@champion")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--stats", type=Path, help="training_stats.json (default results/train/<model>/)")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--batch-size", type=int, default=256, help="patches per prediction batch")


def main(args: argparse.Namespace) -> None:
    """Run predict from parsed arguments."""
    if args.batch_size < 1:
        raise PathcnnError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.model:
        predictor = load_file_predictor(args.model, args.models_dir, args.params, args.stats)
    else:
        predictor = load_registry_predictor(args.model_uri, args.params)
    max_pixels = load_params(args.params).patches.max_image_pixels if args.params.is_file() else 200_000_000
    run(args.images, predictor, args.out, args.batch_size, max_pixels)
