"""The report's rules, one at a time, on hand-made numbers: each fires when it should and stays silent otherwise."""

from __future__ import annotations

from pathcnn import findings as rules


def seed_record(accuracy: float, train_accuracy: float, chance_upper: float = 0.55) -> dict:
    return {"cnn_accuracy": accuracy, "cnn_train_accuracy": train_accuracy, "cnn_fit_chance_upper": chance_upper}


def crossval(folds: dict[str, dict[str, dict]], max_seed_range: float = 0.05, mean_seed_range: float = 0.0) -> dict:
    """A crossval-shaped record: folds of per-seed records, the CNN figure of a fold their mean."""
    record = {
        "status": "ok",
        "cnn_max_seed_range": max_seed_range,
        "cnn_mean_seed_range": mean_seed_range,
        "folds": {},
    }
    for name, seeds in folds.items():
        values = [seed["cnn_accuracy"] for seed in seeds.values()]
        record["folds"][name] = {"cnn_accuracy": sum(values) / len(values), "seeds": seeds}
    return record


# ---------------------------------------------------------------- did not fit


def test_a_fit_within_chance_did_not_fit_and_is_never_called_memorisation() -> None:
    line = rules.did_not_fit("The final CNN", 0.488, 0.55)
    assert line is not None and line.startswith("The final CNN did not fit") and "0.488" in line and "0.550" in line
    assert "neither memorisation nor generalisation" in line
    assert "memorisation." not in line.replace("neither memorisation nor generalisation.", "")


def test_a_fit_above_chance_fitted_and_the_bound_itself_is_within_chance() -> None:
    assert rules.did_not_fit("The final CNN", 0.93, 0.55) is None
    assert rules.did_not_fit("The final CNN", 0.55, 0.55) is not None  # as metrics.fit_status: <= bound fails
    assert rules.did_not_fit("The final CNN", 0.2, None) is None  # no bound: the rule cannot say


def test_each_unfitted_fold_and_seed_is_named() -> None:
    record = crossval(
        {
            "fold1": {"seed42": seed_record(0.8, 0.98), "seed43": seed_record(0.5, 0.488)},
            "fold2": {"seed42": seed_record(0.7, 0.95), "seed43": seed_record(0.7, 0.97)},
        }
    )
    lines = rules.unfitted_fit_lines(record)
    assert len(lines) == 1 and lines[0].startswith("The CNN of fold1, seed 43 did not fit") and "0.488" in lines[0]
    assert rules.unfitted_fit_lines(crossval({"fold1": {"seed42": seed_record(0.8, 0.98)}})) == []
    assert rules.unfitted_fit_lines({"status": "not_possible", "reason": "x"}) == []


def test_a_mean_with_unfitted_fits_is_read_as_neither() -> None:
    line = rules.unfitted_mean(0.62, 1, 6)
    assert line is not None and "1 of 6 fits" in line and "0.620" in line
    assert rules.unfitted_mean(0.62, 0, 6) is None


# ---------------------------------------------------------------- memorisation and overfitting


def test_memorisation_fires_on_a_large_drop_only_when_every_fit_fitted() -> None:
    line = rules.memorisation(1.0, 0.6, all_fitted=True)
    assert line is not None and "within-image memorisation" in line and "0.400 lower" in line
    assert rules.memorisation(1.0, 0.6, all_fitted=False) is None  # an unfitted fold is not memorisation


def test_a_small_drop_is_no_sign_of_memorisation() -> None:
    line = rules.memorisation(0.95, 0.9, all_fitted=True)
    assert line is not None and "no sign of a memorisation drop" in line
    assert "no sign" in rules.memorisation(0.9, 0.8, all_fitted=True)  # exactly MEMORISATION_DROP: not above it
    assert "no sign" in rules.memorisation(0.8, 0.7, all_fitted=True)  # 0.10000000000000009 in floats, still equal
    assert "no sign" in rules.memorisation(0.8, 0.9, all_fitted=True)  # held out higher


def test_overfitting_fires_above_the_gap_only() -> None:
    assert "overfits" in rules.overfitting(0.25)
    assert rules.overfitting(rules.OVERFIT_GAP) is None
    assert rules.overfitting(-0.01) is None
    assert rules.overfitting(None) is None


def test_held_out_at_chance_when_the_interval_contains_the_majority_rate() -> None:
    assert "cannot be told from chance" in rules.held_out_at_chance(0.55, 0.48, 0.62, 0.5)
    assert rules.held_out_at_chance(0.8, 0.74, 0.85, 0.5) is None


# ---------------------------------------------------------------- noise vs difference


def test_a_difference_within_the_seed_spread_is_noise() -> None:
    assert rules.is_noise(0.70, 0.65, 0.10)
    assert rules.is_noise(0.7, 0.6, 0.1)  # equal to the spread (0.0999... in floats): no larger, noise
    assert not rules.is_noise(0.80, 0.65, 0.10)
    assert not rules.is_noise(0.65, 0.80, 0.10)  # either direction
    assert rules.is_noise(0.7, 0.7, 0.0)
    assert not rules.is_noise(0.71, 0.7, 0.0)  # a single seed measures no spread: any gap counts


def test_difference_names_noise_or_the_higher_figure() -> None:
    noise = rules.difference("CNN", 0.70, "features", 0.65, 0.10)
    assert "noise, not a finding" in noise and "higher" not in noise
    real = rules.difference("CNN", 0.60, "features", 0.85, 0.10)
    assert "features is higher by 0.250" in real and "noise" not in real


def test_cnn_vs_features_on_held_out_images_uses_the_seed_spread() -> None:
    assert "noise, not a finding" in rules.cnn_vs_features_held_out(0.72, 0.77, 0.159)
    line = rules.cnn_vs_features_held_out(0.90, 0.60, 0.05)
    assert "CNN is higher by 0.300" in line and line.startswith("On held-out images (mean over folds)")


def test_cnn_vs_features_on_the_patch_split_follows_mcnemar() -> None:
    assert "do not differ significantly" in rules.cnn_vs_features_patch_split(0.95, 0.93, 3, 2, 0.9)
    assert "the CNN is significantly better" in rules.cnn_vs_features_patch_split(0.95, 0.7, 12, 1, 0.003)
    assert "colour/texture baseline is significantly better" in rules.cnn_vs_features_patch_split(
        0.7, 0.95, 1, 12, 0.003
    )


def test_models_are_ranked_only_when_the_lead_exceeds_the_seed_spread() -> None:
    noise = rules.ranking_by_held_out({"model1": 0.672, "model2": 0.686}, {"model1": 0.159, "model2": 0.05})
    assert "model2 0.686, model1 0.672" in noise and "noise" in noise and "**" not in noise
    assert rules.held_out_leader({"model1": 0.672, "model2": 0.686}, {"model1": 0.159, "model2": 0.05}) is None
    clear = rules.ranking_by_held_out({"model1": 0.9, "model2": 0.6}, {"model1": 0.05, "model2": 0.1})
    assert "**model1** performed best" in clear
    assert rules.ranking_by_held_out({"model1": 0.9}, {"model1": 0.1}).endswith("new images: model1 0.900.")
    assert rules.held_out_leader({"model1": 0.9}, {"model1": 0.1}) == "model1"


def test_the_patch_split_disagreeing_is_said_only_for_a_real_leader() -> None:
    spreads = {"model1": 0.05, "model2": 0.05}
    line = rules.rankings_disagree({"model1": 0.9, "model2": 0.6}, spreads, {"model1": 0.95, "model2": 1.0})
    assert line is not None and line.startswith("On the patch split model2 ranks first instead")
    assert rules.rankings_disagree({"model1": 0.9, "model2": 0.6}, spreads, {"model1": 1.0, "model2": 0.9}) is None
    assert rules.rankings_disagree({"model1": 0.62, "model2": 0.6}, spreads, {"model1": 0.9, "model2": 1.0}) is None


def test_a_tie_on_the_patch_split_is_a_tie_not_a_disagreement() -> None:
    """Both models at 1.000 on the patch split (as measured on 2026-11-28): neither ranks first there."""
    spreads = {"model1": 0.18, "model2": 0.02}
    line = rules.rankings_disagree({"model1": 0.696, "model2": 0.961}, spreads, {"model1": 1.0, "model2": 1.0})
    assert line is not None and line.startswith("On the patch split model1 and model2 tie at 1.000")
    assert "ranks first instead" not in line


# ---------------------------------------------------------------- folds and target


def test_folds_disagree_beyond_the_threshold_and_the_seed_spread() -> None:
    line = rules.fold_disagreement({"fold1": 0.539, "fold2": 0.805}, 0.159)
    assert line is not None and "fold1 0.539, fold2 0.805" in line
    assert rules.fold_disagreement({"fold1": 0.539, "fold2": 0.805}, 0.3) is None  # within the seed spread
    assert rules.fold_disagreement({"fold1": 0.7, "fold2": 0.8}, 0.0) is None  # within FOLD_DISAGREEMENT
    assert rules.fold_disagreement({"fold1": 0.5, "fold2": 0.7}, 0.0) is None  # equal to it
    assert rules.fold_disagreement({"fold1": 0.5}, 0.0) is None


def test_target_met_needs_every_fold() -> None:
    assert rules.target_met({"fold1": 0.9, "fold2": 0.85}, 0.85).endswith("met.")
    line = rules.target_met({"fold1": 0.9, "fold2": 0.8}, 0.85)
    assert "not met (below it: fold2 0.800)" in line and "fold1" not in line.split("below it")[1]
    assert rules.target_met({"fold1": 0.9}, None) is None
    assert rules.target_met({}, 0.85) is None


def test_fold_helpers_read_the_crossval_record() -> None:
    record = crossval({"fold1": {"seed42": seed_record(0.6, 0.9), "seed43": seed_record(0.8, 0.9)}}, 0.2, 0.2)
    assert rules.fold_means(record) == {"fold1": 0.7}
    assert rules.fit_count(record) == 2
    assert rules.seed_spread(record) == 0.2


def test_the_spread_compared_is_the_larger_mean_seed_range_of_the_two_sides() -> None:
    """The crossval stage writes cnn_mean_seed_range (how far the mean over folds moves); rules only read it."""
    real = crossval({"fold1": {"seed42": seed_record(0.6, 1)}}, max_seed_range=0.178, mean_seed_range=0.097)
    nonsense = crossval({"fold1": {"seed42": seed_record(0.6, 1)}}, max_seed_range=0.05, mean_seed_range=0.1)
    assert rules.seed_spread(real, nonsense) == 0.1
    assert rules.seed_spread(real) == 0.097  # not the largest single-fold range 0.178


def test_image_level_states_the_best_possible_p_value() -> None:
    line = rules.image_level(5, 8, 4, 2)
    assert "5 of 8 held-out image calls" in line and "all 4 images correct would give p = 0.062" in line


# ---------------------------------------------------------------- nonsense labels


def test_the_real_labels_must_clear_the_nonsense_floor_by_more_than_the_seed_spread() -> None:
    credited = rules.nonsense_floor(0.90, 0.60, 0.10, 0, 6)
    assert "clear the nonsense-label floor (0.600) by 0.300" in credited and "counts as evidence" in credited
    within = rules.nonsense_floor(0.672, 0.624, 0.159, 0, 6)
    assert "do not clear" in within and "not evidence of tissue learning" in within
    at_spread = rules.nonsense_floor(0.7, 0.6, 0.1, 0, 6)  # a gap equal to the spread is not more than it
    assert "not evidence of tissue learning" in at_spread
    below = rules.nonsense_floor(0.5, 0.8, 0.1, 0, 6)
    assert "not evidence of tissue learning" in below


def test_a_nonsense_floor_below_chance_is_raised_to_the_majority_rate() -> None:
    line = rules.nonsense_floor(0.80, 0.45, 0.05, 0, 6, majority_rate=0.5)
    assert "clear the floor, here the majority rate 0.500 (nonsense labels score 0.450 held out, under it" in line
    assert "by 0.300" in line and "counts as evidence" in line
    near_chance = rules.nonsense_floor(0.52, 0.45, 0.05, 0, 6, majority_rate=0.5)
    assert "do not clear the floor, here the majority rate 0.500" in near_chance
    above_chance = rules.nonsense_floor(0.9, 0.6, 0.05, 0, 6, majority_rate=0.5)
    assert "clear the nonsense-label floor (0.600)" in above_chance


def test_two_class_nonsense_far_below_chance_is_an_inverted_signal() -> None:
    """Nonsense labels 0.232 held out, 0.268 below chance with a seed spread of 0.012: the swapped labels score 0.768.

    (Model 2 of 2026-11-28 scored 0.232 too, but with a spread of 0.301: within noise of chance, so there the
    majority rate stays the floor.)
    """
    line = rules.nonsense_floor(0.961, 0.232, 0.012, 0, 6, majority_rate=0.427)
    assert "here the majority rate" in rules.nonsense_floor(0.961, 0.232, 0.301, 0, 6, majority_rate=0.427)
    assert "clear the floor, here 0.768 (nonsense labels score 0.232 held out, far below chance" in line
    assert "by 0.193" in line and "counts as evidence" in line
    # The same real figure against a stronger inverted signal is not credited.
    assert "do not clear the floor, here 0.970" in rules.nonsense_floor(0.961, 0.030, 0.012, 0, 6, majority_rate=0.4)
    # With three classes, 1 - mean means nothing: the majority rate is the floor.
    three = rules.nonsense_floor(0.9, 0.2, 0.012, 0, 6, majority_rate=0.34, class_count=3)
    assert "here the majority rate 0.340" in three


def test_a_credit_on_the_mean_names_a_fold_that_stays_at_chance() -> None:
    """Model 1 of 2026-11-28: mean 0.696 clears 0.579 by more than 0.097, but fold1 is 0.545 against 0.516."""
    folds = [("fold1 (A1, B1 held out)", 0.545, 0.516), ("fold2 (A2, B2 held out)", 0.848, 0.500)]
    line = rules.nonsense_floor(0.696, 0.579, 0.097, 0, 6, majority_rate=0.508, folds=folds)
    assert "counts as evidence" in line and "on the mean over folds only" in line
    assert "fold1 (A1, B1 held out) 0.545 (majority 0.516)" in line and "fold2" not in line
    even = rules.nonsense_floor(0.90, 0.579, 0.05, 0, 6, majority_rate=0.5, folds=[("f1", 0.9, 0.5), ("f2", 0.9, 0.5)])
    assert "on the mean over folds only" not in even


def test_an_unfitted_fit_on_either_side_of_the_floor_credits_nothing() -> None:
    line = rules.nonsense_floor(0.95, 0.45, 0.05, 4, 4)
    assert "4 of 4 nonsense-label held-out fits did not fit" in line and "not evidence of tissue learning" in line
    real = rules.nonsense_floor(0.95, 0.45, 0.05, 0, 4, real_unfitted=1)
    assert "includes 1 fit(s) that did not fit" in real and "not evidence of tissue learning" in real
    assert "not evidence of tissue learning" in rules.nonsense_floor_unknown("class A has one image")


def test_the_nonsense_patch_split_says_what_the_metric_gives_meaningless_labels() -> None:
    high = rules.nonsense_patch_split(0.95, 0.93, 0.97, 0.5, 0, 3)
    assert "0.950 (seeds 0.930-0.970; majority 0.500)" in high and "no evidence of tissue learning" in high
    low = rules.nonsense_patch_split(0.52, 0.48, 0.56, 0.5, 0, 3)
    assert "mean nothing" in low and "within the seed spread of the majority rate" in low
    unfitted = rules.nonsense_patch_split(0.32, 0.31, 0.33, 0.31, 2, 2)
    assert unfitted.startswith("2 of 2 nonsense-label patch-split fits did not fit") and "does not show" in unfitted


# ---------------------------------------------------------------- the rest


def test_the_shuffled_control_warns_only_on_a_suspected_leak() -> None:
    control = {
        "test_accuracy": 0.52,
        "chance_accuracy": 0.5,
        "chance_margin": 0.15,
        "image_calls": 12,
        "image_calls_correct": 6,
        "image_p_value": 0.6,
        "permutation_accuracies": {"permutation1": 0.5, "permutation2": 0.54},
        "leak_suspected": False,
    }
    assert "no sign that labels leak" in rules.shuffled_control(control)
    assert rules.shuffled_control({**control, "leak_suspected": True, "test_accuracy": 0.9}).startswith("WARNING")


def test_the_easier_pair_needs_two_models_and_the_patch_ranking_names_the_top() -> None:
    assert "model2's classes are the easier pair" in rules.easier_pair({"model1": 0.77, "model2": 0.88})
    assert rules.easier_pair({"model1": 0.77}) is None
    assert "**model2** scored highest" in rules.ranking_by_patch_split({"model1": 0.9, "model2": 0.97})
    tied = rules.ranking_by_patch_split({"model1": 1.0, "model2": 1.0})
    assert "model1 and model2 tie for the top" in tied and "scored highest" not in tied


def test_lines_keeps_the_rules_that_applied() -> None:
    assert rules.lines("a", None, "b") == ["a", "b"]
    assert "was not possible (class A has one image)" in rules.not_possible("Cross-validation", "class A has one image")


def test_tuned_against_untuned_is_noise_within_the_seed_spread_and_optimistic_when_chosen_on_the_folds() -> None:
    line = rules.tuned_vs_untuned(0.85, 0.76, 0.04, chosen_on_folds=True)
    assert "tuned 0.850, untuned 0.760" in line and "noise" not in line
    assert "so the tuned figure is optimistic" in line
    within = rules.tuned_vs_untuned(0.85, 0.83, 0.04, chosen_on_folds=False)
    assert "noise" in within and "optimistic" not in within
