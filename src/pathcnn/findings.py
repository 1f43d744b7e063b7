"""The report's rules: each conclusion drawn from the numbers is one small pure function returning a sentence.

A rule returns None when it does not apply. Inputs are plain numbers or the stages' metrics dicts; nothing
here reads files or logs. Thresholds are named constants so that the report can state them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pathcnn.reporting import number, p_value
from pathcnn.results import ModelResults
from pathcnn.significance import best_possible_image_p_value

SIGNIFICANCE = 0.05
MEMORISATION_DROP = 0.10  # patch-split minus image-held-out accuracy above this: within-image memorisation
OVERFIT_GAP = 0.10
FOLD_DISAGREEMENT = 0.20
TOLERANCE = 1e-9  # float rounding: 0.8 - 0.7 is 0.10000000000000009, which is not larger than 0.10


def exceeds(gap: float, limit: float) -> bool:
    """Whether a (signed) gap is larger than a threshold or a seed-to-seed spread, beyond float rounding."""
    return gap > limit + TOLERANCE


def did_not_fit(what: str, train_accuracy: float, chance_upper: float | None) -> str | None:
    """A fit whose accuracy on its own training patches lies within chance: neither memorisation nor generalisation."""
    if chance_upper is None or train_accuracy > chance_upper:
        return None
    return (
        f"{what} did not fit: its accuracy on its own training patches, {number(train_accuracy)}, lies within "
        f"chance (chance reaches up to {number(chance_upper)}). Its other figures describe an untrained network, "
        "neither memorisation nor generalisation."
    )


def seed_label(key: str) -> str:
    """'seed43' -> 'seed 43'."""
    return f"seed {key.removeprefix('seed')}"


def unfitted_fit_lines(crossval: Mapping[str, Any]) -> list[str]:
    """One did-not-fit finding per fold and seed whose CNN did not fit ("The CNN of fold1, seed 43 ...")."""
    lines = []
    for fold_name, fold in (crossval.get("folds") or {}).items():
        for key, record in (fold.get("seeds") or {}).items():
            line = did_not_fit(
                f"The CNN of {fold_name}, {seed_label(key)}",
                record["cnn_train_accuracy"],
                record.get("cnn_fit_chance_upper"),
            )
            if line is not None:
                lines.append(line)
    return lines


def unfitted_mean(mean: float, unfitted: int, fits: int) -> str | None:
    """A held-out mean that includes fits which did not fit is read as neither memorisation nor generalisation."""
    if unfitted == 0:
        return None
    return (
        f"The held-out mean {number(mean)} includes {unfitted} of {fits} fits that did not fit, so it is read "
        "neither as within-image memorisation nor as generalisation; fix the fit first."
    )


def overfitting(train_val_gap: float | None) -> str | None:
    """Training accuracy above validation accuracy by more than OVERFIT_GAP."""
    if train_val_gap is None or not exceeds(train_val_gap, OVERFIT_GAP):
        return None
    return (
        f"Training accuracy exceeds validation accuracy by {number(train_val_gap)} "
        f"(more than {number(OVERFIT_GAP, 2)}): the CNN overfits its training patches."
    )


def memorisation(patch_accuracy: float, held_out_mean: float, all_fitted: bool) -> str | None:
    """Patch-split test vs held-out mean; only read when every fit fitted (an unfitted fit is not memorisation)."""
    if not all_fitted:
        return None
    drop = patch_accuracy - held_out_mean
    if exceeds(drop, MEMORISATION_DROP):
        return (
            f"Test accuracy falls from {number(patch_accuracy)} (patch split) to a mean of {number(held_out_mean)} "
            f"on held-out images, {number(drop)} lower (more than {number(MEMORISATION_DROP, 2)}): part of the "
            "patch-split figure is within-image memorisation (patches of one image sit in both train and test)."
        )
    return (
        f"Held-out-image accuracy (mean {number(held_out_mean)}) is not more than {number(MEMORISATION_DROP, 2)} "
        f"below the patch-split test accuracy {number(patch_accuracy)}: no sign of a memorisation drop."
    )


def held_out_at_chance(accuracy: float, ci_low: float, ci_high: float, null_rate: float) -> str | None:
    """Pooled held-out accuracy whose 95% interval contains the majority rate: not told from chance."""
    if ci_low > null_rate:
        return None
    return (
        f"Pooled over folds (mean of seeds), the CNN scores {number(accuracy)} on held-out images (95% CI "
        f"[{number(ci_low)}, {number(ci_high)}] over its seeds), an interval that contains the majority rate "
        f"{number(null_rate)}: it cannot be told "
        "from chance on unseen images."
    )


def is_noise(first: float, second: float, seed_spread: float) -> bool:
    """A difference no larger than the seed-to-seed spread is noise, not a finding."""
    return not exceeds(abs(first - second), seed_spread)


def difference(first: str, first_value: float, second: str, second_value: float, seed_spread: float) -> str:
    """first vs second, called noise when the gap does not exceed the seed-to-seed spread."""
    gap = abs(first_value - second_value)
    values = f"{first} {number(first_value)}, {second} {number(second_value)}"
    if is_noise(first_value, second_value, seed_spread):
        return (
            f"{values}: the difference, {number(gap)}, is no larger than the seed-to-seed spread "
            f"{number(seed_spread)}, so it is noise, not a finding"
        )
    higher = first if first_value > second_value else second
    return f"{values}: {higher} is higher by {number(gap)}, more than the seed-to-seed spread {number(seed_spread)}"


def cnn_vs_features_held_out(cnn_mean: float, features_mean: float, seed_spread: float) -> str:
    """CNN against the colour/texture features on held-out images (means over folds), with the noise rule."""
    return (
        "On held-out images (mean over folds): "
        + difference("CNN", cnn_mean, "colour/texture features", features_mean, seed_spread)
        + "."
    )


def tuned_vs_untuned(tuned_mean: float, untuned_mean: float, seed_spread: float, chosen_on_folds: bool) -> str:
    """Held-out accuracy with the study's values against the tune.space start values, and whether it is optimistic.

    chosen_on_folds: the study scored its trials on held-out images of the train split, i.e. on the folds'
    test images, so the tuned figure carries the selection and overstates what a fresh choice would reach.
    """
    text = (
        "On held-out images (mean over folds), tuned against untuned values (tune.space start values): "
        + difference("tuned", tuned_mean, "untuned", untuned_mean, seed_spread)
        + "."
    )
    if chosen_on_folds:
        text += (
            " The study chose the tuned values by their accuracy on images left out of the train split, the same "
            "images these folds hold out, so the tuned figure is optimistic; the untuned figure involves no "
            "choice made on them."
        )
    return text


def cnn_vs_features_patch_split(
    cnn_accuracy: float, features_accuracy: float, only_cnn_correct: int, only_features_correct: int, p: float
) -> str:
    """CNN against the features on the same patch-split test patches (one fit each): McNemar's exact test."""
    figures = f"CNN {number(cnn_accuracy)}, features {number(features_accuracy)}; McNemar p = {p_value(p)}"
    if p >= SIGNIFICANCE:
        return (
            "On the patch-split test patches the CNN and the colour/texture baseline do not differ "
            f"significantly ({figures})."
        )
    better = "CNN" if only_cnn_correct > only_features_correct else "colour/texture baseline"
    return f"On the patch-split test patches the {better} is significantly better ({figures})."


def fold_disagreement(fold_accuracies: Mapping[str, float], seed_spread: float) -> str | None:
    """Folds further apart than FOLD_DISAGREEMENT and than the seed-to-seed spread."""
    if len(fold_accuracies) < 2:
        return None
    gap = max(fold_accuracies.values()) - min(fold_accuracies.values())
    if not exceeds(gap, max(FOLD_DISAGREEMENT, seed_spread)):
        return None
    folds = ", ".join(f"{name} {number(value)}" for name, value in fold_accuracies.items())
    return (
        f"The folds disagree ({folds}; {number(gap)} apart, more than {number(FOLD_DISAGREEMENT, 2)} and than the "
        f"seed-to-seed spread {number(seed_spread)}): accuracy depends on which image is held out, and with this "
        "few images the report cannot say which fold is typical."
    )


def target_met(fold_accuracies: Mapping[str, float], target: float | None) -> str | None:
    """Whether every fold's mean held-out accuracy reaches report.targets.<model>."""
    if target is None or not fold_accuracies:
        return None
    head = f"Target (every fold's mean held-out accuracy >= {number(target, 2)}): "
    if all(value >= target for value in fold_accuracies.values()):
        return head + "met."
    below = ", ".join(f"{name} {number(value)}" for name, value in fold_accuracies.items() if value < target)
    return head + f"not met (below it: {below})."


def image_level(correct: int, calls: int, images: int, n_classes: int) -> str:
    """Image-level calls, and why no image-level claim can reach significance with this few images."""
    best = best_possible_image_p_value(images, 1.0 / n_classes)
    return (
        f"Image level: {correct} of {calls} held-out image calls correct (each fit calls each of its held-out "
        f"images by mean patch probability); even all {images} images correct would give p = {p_value(best)} "
        "against guessing, so with this few images no image-level claim reaches significance, and patch-level "
        "p-values (which treat patches of one image as independent) overstate the evidence."
    )


def nonsense_patch_split(
    test_accuracy: float, low: float, high: float, majority: float, fits_failed: int, fits: int
) -> str:
    """What the task's patch-split metric gives labels that mean nothing about tissue (if those fits fitted)."""
    figures = f"{number(test_accuracy)} (seeds {number(low)}-{number(high)}; majority {number(majority)})"
    if fits_failed:
        return (
            f"{fits_failed} of {fits} nonsense-label patch-split fits did not fit, so their test accuracy {figures} "
            "does not show what the patch-split metric gives labels that mean nothing."
        )
    text = (
        f"With nonsense labels (classes that follow image identity) the patch-split test accuracy is {figures}: "
        "that is what the task's metric gives labels that mean nothing about tissue"
    )
    if exceeds(test_accuracy - majority, high - low):
        return text + ", so a high patch-split figure alone is no evidence of tissue learning."
    return text + "; here it stays within the seed spread of the majority rate."


def nonsense_floor(
    real_mean: float,
    nonsense_mean: float,
    seed_spread: float,
    nonsense_unfitted: int,
    nonsense_fits: int,
    real_unfitted: int = 0,
    majority_rate: float | None = None,
    class_count: int = 2,
    folds: Sequence[tuple[str, float, float]] = (),
) -> str:
    """Credit tissue learning only when every fit fitted and the real held-out mean clears the nonsense floor.

    The floor is the nonsense-label held-out mean, but never below the real held-out majority rate: clearing a
    floor below chance proves nothing. With two classes, nonsense labels below chance by more than the seed
    spread are a signal too: the images pair up across the nonsense classes, so image similarity predicts the
    swapped labels at 1 - mean, and that is the floor. folds: (name, accuracy, majority rate) of the real
    folds; a credit that rests on the mean while a fold stays within the seed spread of its majority rate says so.
    """
    if real_unfitted:
        return (
            f"The real held-out mean {number(real_mean)} includes {real_unfitted} fit(s) that did not fit, so it is "
            f"not weighed against the nonsense-label floor ({number(nonsense_mean)}): the held-out figure is not "
            "evidence of tissue learning."
        )
    if nonsense_unfitted:
        return (
            f"{nonsense_unfitted} of {nonsense_fits} nonsense-label held-out fits did not fit, so the floor "
            f"({number(nonsense_mean)}) is not measured: the held-out figure {number(real_mean)} is not evidence "
            "of tissue learning."
        )
    floor, floor_text = nonsense_mean, f"the nonsense-label floor ({number(nonsense_mean)})"
    swapped = 1.0 - nonsense_mean
    if class_count == 2 and swapped > nonsense_mean and exceeds(swapped - nonsense_mean, 2 * seed_spread):
        floor = max(swapped, majority_rate or 0.0)
        floor_text = (
            f"the floor, here {number(floor)} (nonsense labels score {number(nonsense_mean)} held out, far below "
            f"chance: the images pair up across the nonsense classes, so image similarity predicts the swapped "
            f"labels at {number(swapped)})"
        )
    elif majority_rate is not None and nonsense_mean < majority_rate:
        floor = majority_rate
        floor_text = (
            f"the floor, here the majority rate {number(majority_rate)} (nonsense labels score "
            f"{number(nonsense_mean)} held out, under it)"
        )
    gap = real_mean - floor
    if exceeds(gap, seed_spread):
        text = (
            f"On held-out images the real labels ({number(real_mean)}) clear {floor_text} by {number(gap)}, more "
            f"than the seed-to-seed spread {number(seed_spread)}: the held-out figure counts as evidence of learning "
            "the tissue classes beyond image identity"
        )
        weak = [(name, accuracy, rate) for name, accuracy, rate in folds if not exceeds(accuracy - rate, seed_spread)]
        if weak:
            listed = ", ".join(f"{name} {number(accuracy)} (majority {number(rate)})" for name, accuracy, rate in weak)
            text += (
                f", on the mean over folds only: {listed} stays within the seed spread of its majority rate, so "
                "on those held-out images the CNN shows no learning"
            )
        return text + "."
    return (
        f"On held-out images the real labels ({number(real_mean)}) do not clear {floor_text} by more than the "
        f"seed-to-seed spread {number(seed_spread)} (difference {number(gap)}): the held-out figure is not evidence "
        "of tissue learning."
    )


def nonsense_floor_unknown(reason: str) -> str:
    """Without a nonsense-label held-out figure there is no floor, so tissue learning is not credited."""
    return (
        f"The nonsense-label held-out control was not possible ({reason}): without its floor the held-out figure "
        "is not evidence of tissue learning."
    )


def not_possible(what: str, reason: str) -> str:
    """A control or evaluation the data did not allow."""
    return f"{what} was not possible ({reason}); what it would show cannot be concluded."


def shuffled_control(control: Mapping[str, Any]) -> str:
    """The shuffled-label control: a warning when it scores above chance, else no sign of leakage."""
    calls = f"{control['image_calls_correct']} of {control['image_calls']} image calls right"
    if control.get("leak_suspected"):
        return (
            f"WARNING: the shuffled-label control scores {number(control['test_accuracy'])}, more than "
            f"{number(control['chance_margin'], 2)} above chance ({number(control['chance_accuracy'])}), and is "
            f"{calls} (p = {p_value(control['image_p_value'])}): the evaluation leaks information; the test "
            "accuracies above are not trustworthy."
        )
    spread = ", ".join(number(value) for value in (control.get("permutation_accuracies") or {}).values())
    return (
        f"The shuffled-label control scores {number(control['test_accuracy'])} (mean of {spread}; chance "
        f"{number(control['chance_accuracy'])}; {calls}, p = {p_value(control['image_p_value'])}): no sign that "
        "labels leak through the split or the pipeline. Single shuffled models swing widely because test patches "
        "cluster by image."
    )


def held_out_leader(means: Mapping[str, float], seed_spreads: Mapping[str, float]) -> str | None:
    """The model ranked first on held-out images, or None when its lead over the second is noise."""
    ranked = sorted(means, key=lambda name: -means[name])
    if len(ranked) < 2:
        return ranked[0] if ranked else None
    best, second = ranked[0], ranked[1]
    spread = max(seed_spreads[best], seed_spreads[second])
    return None if is_noise(means[best], means[second], spread) else best


def ranking_by_held_out(means: Mapping[str, float], seed_spreads: Mapping[str, float]) -> str:
    """Rank models by held-out CNN accuracy; a lead no larger than the seed-to-seed spread is noise."""
    ranked = sorted(means, key=lambda name: -means[name])
    listing = ", ".join(f"{name} {number(means[name])}" for name in ranked)
    head = (
        f"Ranked by CNN accuracy on held-out images (mean over folds and seeds), the measure for new images: {listing}."
    )
    if len(ranked) < 2:
        return head
    best, second = ranked[0], ranked[1]
    spread = max(seed_spreads[best], seed_spreads[second])
    if held_out_leader(means, seed_spreads) is None:
        return (
            f"{head} {best} leads {second} by {number(means[best] - means[second])}, no more than the seed-to-seed "
            f"spread {number(spread)}: noise, so neither can be called better on this measure."
        )
    return f"{head} **{best}** performed best, ahead of {second} by more than the seed-to-seed spread {number(spread)}."


def rankings_disagree(
    means: Mapping[str, float], seed_spreads: Mapping[str, float], patch_accuracies: Mapping[str, float]
) -> str | None:
    """How the patch split ranks the (noise-free) held-out leader: another model first, or a tie at the top."""
    leader = held_out_leader(means, seed_spreads)
    if leader is None or leader not in patch_accuracies:
        return None
    top = max(patch_accuracies.values())
    first = [name for name, value in patch_accuracies.items() if value == top]
    if leader not in first:
        return (
            f"On the patch split {' and '.join(first)} ranks first instead: the two measures disagree, and only the "
            "held-out one speaks to new images."
        )
    if len(first) > 1:
        return (
            f"On the patch split {' and '.join(first)} tie at {number(top)}: that measure cannot tell them apart; "
            "only the held-out one speaks to new images."
        )
    return None


def ranking_by_patch_split(accuracies: Mapping[str, float]) -> str:
    """The fallback ranking when some model has no held-out figure: the patch-split test accuracy."""
    ranked = sorted(accuracies.items(), key=lambda item: -item[1])
    listing = ", ".join(f"{name} {number(value)}" for name, value in ranked)
    first = [name for name, value in ranked if value == ranked[0][1]]
    verdict = f"**{first[0]}** scored highest." if len(first) == 1 else f"{' and '.join(first)} tie for the top."
    return (
        "Image-held-out accuracy is not available for every model, so the ranking uses the patch-split test "
        f"accuracy, which mixes in within-image memorisation (one fit each, no seed spread): {listing}. {verdict}"
    )


def easier_pair(features_means: Mapping[str, float]) -> str | None:
    """Which model's classes simple colour/texture statistics tell apart best on held-out images."""
    if len(features_means) < 2:
        return None
    easiest = max(features_means, key=lambda name: features_means[name])
    listing = ", ".join(f"{name} {number(value)}" for name, value in features_means.items())
    return (
        f"The colour/texture baseline on held-out images reaches {listing}: by simple colour and texture "
        f"statistics {easiest}'s classes are the easier pair to tell apart, which may explain part of any "
        "difference between the models."
    )


def fold_means(crossval: Mapping[str, Any], key: str = "cnn_accuracy") -> dict[str, float]:
    """Each fold's figure (the CNN's: mean over seeds)."""
    return {name: fold[key] for name, fold in (crossval.get("folds") or {}).items()}


def fit_count(crossval: Mapping[str, Any]) -> int:
    """How many CNN fits the folds hold (folds x seeds)."""
    return sum(len(fold.get("seeds") or {}) for fold in (crossval.get("folds") or {}).values())


def seed_spread(*records: Mapping[str, Any]) -> float:
    """The seed-to-seed spread of held-out means compared with each other: the larger of their cnn_mean_seed_range.

    Each crossval-shaped record carries it (written by crossvalidation.summarise): how far its mean over folds
    moves from seed to seed, not the largest single-fold range.
    """
    return max(float(record["cnn_mean_seed_range"]) for record in records)


def lines(*found: str | None) -> list[str]:
    """The sentences of the rules that applied."""
    return [line for line in found if line is not None]


# ---------------------------------------------------------------- which rules a model's results call for


def held_out_findings(result: ModelResults, target: float | None) -> list[str]:
    """What the image-held-out folds show: fits, memorisation, folds, target, images, CNN vs features."""
    crossval = result.metrics["crossval"]
    if not result.crossval_ok:
        return [not_possible("Image-held-out cross-validation", crossval["reason"])]
    unfitted = unfitted_fit_lines(crossval)
    mean, spread = crossval["cnn_mean_accuracy"], seed_spread(crossval)
    pooled = result.stats["crossval_cnn"]
    folds = fold_means(crossval)
    return unfitted + lines(
        unfitted_mean(mean, len(unfitted), fit_count(crossval)),
        held_out_at_chance(pooled["accuracy"], pooled["ci_low"], pooled["ci_high"], pooled["null_rate"]),
        memorisation(result.metrics["train"]["test_accuracy"], mean, all_fitted=not unfitted),
        fold_disagreement(folds, crossval["cnn_max_seed_range"]),  # folds vs a single fold's spread
        target_met(folds, target),
        image_level(pooled["image_correct"], pooled["image_n"], result.held_out_images, len(result.classes)),
        cnn_vs_features_held_out(mean, crossval["features_mean_accuracy"], spread),
        tuned_vs_untuned(
            mean,
            result.metrics["crossval-untuned"]["cnn_mean_accuracy"],
            seed_spread(crossval, result.metrics["crossval-untuned"]),
            result.chosen_on_folds,
        )
        if result.untuned_ok
        else None,
    )


def nonsense_findings(result: ModelResults) -> list[str]:
    """What the nonsense-label control gives the patch-split metric, and whether the real labels clear its floor."""
    nonsense = result.metrics["nonsense"]
    if not result.nonsense_ok:
        return [not_possible("The nonsense-label control", nonsense["reason"])]
    patch = nonsense["patch_split"]
    found = [
        nonsense_patch_split(
            patch["test_accuracy"],
            patch["test_accuracy_min"],
            patch["test_accuracy_max"],
            patch["baseline_accuracy"],
            patch["fits_failed"],
            len(nonsense["seeds"]),
        )
    ]
    held = nonsense["held_out"]
    if not result.crossval_ok:
        return found
    if not result.nonsense_held_out_ok:
        return found + [nonsense_floor_unknown(held["reason"])]
    crossval = result.metrics["crossval"]
    return found + [
        nonsense_floor(
            crossval["cnn_mean_accuracy"],
            held["cnn_mean_accuracy"],
            seed_spread(crossval, held),
            len(held["cnn_folds_not_fitted"]),
            fit_count(held),
            len(crossval["cnn_folds_not_fitted"]),
            crossval["mean_baseline_accuracy"],
            len(result.classes),
            [
                (
                    f"{name} ({fold['test_images'].replace(',', ', ')} held out)",
                    fold["cnn_accuracy"],
                    fold["baseline_accuracy"],
                )
                for name, fold in crossval["folds"].items()
            ],
        )
    ]


def model_findings(result: ModelResults, target: float | None) -> list[str]:
    """The reasons behind a model's numbers, each from a rule above."""
    train, comparison = result.metrics["train"], result.comparison
    return (
        lines(
            overfitting(train["train_val_gap"]),
            did_not_fit("The final CNN", train["train_accuracy"], train.get("fit_chance_upper")),
        )
        + held_out_findings(result, target)
        + nonsense_findings(result)
        + [
            cnn_vs_features_patch_split(
                result.stats["train"]["accuracy"],
                result.stats["baseline"]["accuracy"],
                comparison["only_first_correct"],
                comparison["only_second_correct"],
                comparison["p_value"],
            ),
            shuffled_control(result.metrics["control"]),
        ]
    )


def ranking(results: list[ModelResults]) -> list[str]:
    """Question 3: models ranked by held-out accuracy (noise-aware), else by the patch split."""
    patch = {r.name: r.metrics["train"]["test_accuracy"] for r in results}
    if not all(r.crossval_ok for r in results):
        return [ranking_by_patch_split(patch)]
    means = {r.name: r.metrics["crossval"]["cnn_mean_accuracy"] for r in results}
    spreads = {r.name: seed_spread(r.metrics["crossval"]) for r in results}
    features = {r.name: r.metrics["crossval"]["features_mean_accuracy"] for r in results}
    return lines(
        ranking_by_held_out(means, spreads),
        rankings_disagree(means, spreads, patch),
        easier_pair(features),
    )
