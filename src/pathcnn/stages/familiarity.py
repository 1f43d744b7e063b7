"""Stage `familiarity`: the reference predict uses to call an image unfamiliar, calibrated and measured.

For each image of the model in turn, the stain-space and embedding Gaussians are fitted on the other images'
training patches and the held-out image is scored: its own patches (in distribution: the false alarms) and
transformed copies of them (re-stained to DAB/haematoxylin, greyscale, blurred, JPEG-compressed, resized to
another magnification). The threshold is set on the held-out images only (familiarity.false_alarm_rate), and
never on the transformations, which only measure it: AUROC and detection rate per transformation, plus
non-tissue pictures, in results/familiarity/<model>/metrics.json. The reference predict applies (Gaussians
of all training patches, scales, threshold) goes beside the model as models/<model>.familiarity.npz.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from pathcnn import familiarity as fam
from pathcnn.artifacts import atomic_path, write_json
from pathcnn.console import say
from pathcnn.errors import PathcnnError
from pathcnn.images import list_images, load_rgb
from pathcnn.params import effective_train_params, load_params
from pathcnn.patchsets import patch_array, read_split
from pathcnn.stages.arguments import add_model_arguments
from pathcnn.stain import normalize_by_image
from pathcnn.tiling import tile_image


def scale_name(factor: float) -> str:
    return f"scale_{factor:g}x"


def run(
    model_name: str,
    patches_dir: Path,
    split_file: Path,
    raw_dir: Path,
    model_file: Path,
    tuned_file: Path | None,
    out_dir: Path,
    reference_file: Path,
    params_path: Path,
) -> dict[str, Any]:
    """Calibrate and measure the unfamiliarity score of one model; write the reference and the metrics."""
    import keras

    from pathcnn import tracking

    params = load_params(params_path)
    settings = params.familiarity
    train, _ = effective_train_params(params, tuned_file)
    if not model_file.is_file():
        raise PathcnnError(f"{model_file}: no such model; run `dvc repro train@{model_name}` first")
    two_outputs = fam.embedding_model(keras.saving.load_model(model_file))
    split = read_split(split_file)
    images = sorted(split["image_id"].unique())
    if len(images) < 3:
        reason = f"calibration holds out one image at a time and needs 3 images or more ({len(images)} found)"
        with atomic_path(reference_file) as temporary:
            fam.save_unavailable(temporary, reason)
        write_json(out_dir / "metrics.json", {"status": "not_possible", "reason": reason})
        say(f"familiarity {model_name}: not possible: {reason}")
        return {"status": "not_possible", "reason": reason}

    def embedded(patches: np.ndarray) -> np.ndarray:
        normalised = normalize_by_image(patches, np.zeros(len(patches)), train.stain_normalization)
        return fam.embed(two_outputs, normalised)[0]

    def stain_reference(images_used: list[str]) -> fam.Gaussian:
        # The training patches and stain-jittered copies: the colour variation the CNN was trained to accept.
        base = np.concatenate([patches[image][is_train[image]] for image in images_used])
        copies = [
            fam.stain_features(fam.stain_jittered(base, train.color_jitter, params.base.seed + copy))
            for copy in range(settings.jitter_copies if train.color_jitter > 0 else 0)
        ]
        return fam.fit_gaussian(np.concatenate([np.concatenate([stain[i][is_train[i]] for i in images_used]), *copies]))

    def embedding_reference(images_used: list[str]) -> fam.Neighbours:
        return fam.fit_neighbours(np.concatenate([embeddings[image][is_train[image]] for image in images_used]))

    def distances(found: np.ndarray, reference: tuple[fam.Gaussian, fam.Neighbours]) -> fam.Distances:
        return fam.Distances(reference[0].distance(fam.stain_features(found)), reference[1].distance(embedded(found)))

    patches = {image: patch_array(patches_dir, split[split["image_id"] == image]).read() for image in images}
    is_train = {image: (split[split["image_id"] == image]["split"] == "train").to_numpy() for image in images}
    stain = {image: fam.stain_features(patches[image]) for image in images}
    embeddings = {image: embedded(patches[image]) for image in images}
    raw = {entry.image_id: entry.path for entry in list_images(raw_dir)}
    held_out: dict[str, fam.Distances] = {}
    shifted: dict[str, dict[str, fam.Distances]] = {}
    for image in images:
        others = [other for other in images if other != image]
        reference = (stain_reference(others), embedding_reference(others))
        held_out[image] = fam.Distances(reference[0].distance(stain[image]), reference[1].distance(embeddings[image]))
        for name, transform in fam.TRANSFORMS.items():
            shifted.setdefault(name, {})[image] = distances(transform(patches[image]), reference)
        if image not in raw:
            continue
        picture = load_rgb(raw[image], max_pixels=params.patches.max_image_pixels)
        for factor in settings.scales:
            tiles = tile_image(
                fam.rescaled(picture, factor),
                params.patches.patch_size,
                params.patches.stride,
                params.patches.min_tissue_fraction,
                params.patches.tissue_min_saturation,
            )
            if tiles.kept_count:
                shifted.setdefault(scale_name(factor), {})[image] = distances(tiles.patches, reference)
    calibration = fam.calibrate(held_out, settings.false_alarm_rate)
    final = (stain_reference(images), embedding_reference(images))
    size = params.patches.patch_size
    shifted["non_tissue"] = {
        name: distances(fam.all_tiles(picture, size), final) for name, picture in fam.texture_images().items()
    }
    shifted["ihc_sample"] = {"immunohistochemistry": distances(fam.ihc_sample(params.patches), final)}
    in_distribution = np.concatenate([calibration.score(d) for d in held_out.values()])
    metrics: dict[str, Any] = {
        "false_alarm_rate_target": settings.false_alarm_rate,
        "false_alarm_rate": calibration.false_alarm_rate,
        "false_alarm_rate_max_image": calibration.false_alarm_rate_max,
        "threshold": calibration.threshold,
        "image_share": settings.image_share,
        "held_out_patches": int(len(in_distribution)),
        "held_out_images_flagged": sum(share > settings.image_share for share in calibration.per_image.values()),
        "held_out_images_flagged_crossfit": sum(
            share > settings.image_share for share in calibration.per_image_crossfit.values()
        ),
        "held_out_image_share": calibration.per_image,
        "held_out_image_share_crossfit": calibration.per_image_crossfit,
        "transformations": {
            name: fam.detection(by_image, held_out, calibration, settings.image_share)
            for name, by_image in shifted.items()
        },
    }
    reference = fam.Reference(
        final[0],
        final[1],
        calibration.stain_scale,
        calibration.embedding_scale,
        calibration.threshold,
        settings.image_share,
        calibration.false_alarm_rate,
    )
    experiment = tracking.experiment_name(params.base.experiment_prefix, model_name)
    with tracking.tracked_run(experiment, f"familiarity-{model_name}", "familiarity", {"model": model_name}):
        tracking.log_params({"familiarity": settings.model_dump(), "color_jitter": train.color_jitter})
        with atomic_path(reference_file) as temporary:
            reference.save(temporary)
        write_json(out_dir / "metrics.json", metrics)
        tracking.log_metrics_file(out_dir / "metrics.json")
        tracking.log_artifact(reference_file)
    found = metrics["transformations"].items()
    detected = ", ".join(f"{name} {record['auroc']:.2f}" for name, record in found if record["auroc"] is not None)
    say(
        f"familiarity {model_name}: threshold {calibration.threshold:.2f}, false alarms "
        f"{calibration.false_alarm_rate:.3f} of held-out patches (target {settings.false_alarm_rate}); AUROC {detected}"
    )
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of the stage: the per-model ones, the images, the model and its reference."""
    add_model_arguments(parser, tuned=True)
    parser.add_argument("--raw", type=Path, required=True, help="the images (data/raw), for the resized copies")
    parser.add_argument("--model-file", type=Path, required=True, help="the train stage's model (models/<model>.keras)")
    parser.add_argument(
        "--reference", type=Path, required=True, help="the reference predict reads (models/<model>.familiarity.npz)"
    )


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    run(
        args.model,
        args.patches,
        args.split,
        args.raw,
        args.model_file,
        args.tuned,
        args.out,
        args.reference,
        args.params,
    )
