"""The significance and report stages on hand-made stage outputs: a missing input stops them with one line, a
full set is reported, and the statistics the report shows are the significance stage's."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from pathcnn import results as stage_results
from pathcnn.errors import PathcnnError
from pathcnn.stages import report, significance

CLASSES = {"model1": ("A", "B"), "model2": ("C", "D")}
SEEDS = (42, 43)


def prediction_rows(classes: tuple[str, ...], images: list[str], wrong: int, **columns: object) -> pd.DataFrame:
    """Four patches per image, labelled by the image's first letter; the first `wrong` rows predicted wrongly."""
    rows = []
    for image in images:
        label = image[0]
        for index in range(4):
            rows.append({"patch_id": f"{image}_{index}", "image_id": image, "label": label})
    frame = pd.DataFrame(rows)
    other = {classes[0]: classes[1], classes[1]: classes[0]}
    frame["predicted"] = [other[label] if i < wrong else label for i, label in enumerate(frame["label"])]
    for name in classes:
        frame[f"prob_{name}"] = (frame["predicted"] == name).astype(float) * 0.8 + 0.1
    return frame.assign(**columns)


def held_out_record(folds: dict[str, dict[int, tuple[float, float]]], features: bool) -> dict:
    """A crossval-shaped record from (test accuracy, train accuracy) per fold and seed; chance reaches 0.55."""
    record: dict = {"status": "ok", "seeds": list(SEEDS), "folds": {}, "cnn_folds_not_fitted": []}
    for name, seeds in folds.items():
        accuracies = [accuracy for accuracy, _ in seeds.values()]
        fold = {
            "test_images": name,
            "n_test": 8,
            "baseline_accuracy": 0.5,
            "cnn_accuracy": sum(accuracies) / len(accuracies),
            "cnn_accuracy_min": min(accuracies),
            "cnn_accuracy_max": max(accuracies),
            "cnn_accuracy_range": max(accuracies) - min(accuracies),
            "cnn_train_accuracy": sum(train for _, train in seeds.values()) / len(seeds),
            "cnn_fits_failed": sum(train <= 0.55 for _, train in seeds.values()),
            "cnn_image_accuracy": 0.5,
            "seeds": {
                f"seed{seed}": {"cnn_accuracy": accuracy, "cnn_train_accuracy": train, "cnn_fit_chance_upper": 0.55}
                for seed, (accuracy, train) in seeds.items()
            },
        }
        if features:
            fold["features_accuracy"] = 0.75
        record["folds"][name] = fold
        record["cnn_folds_not_fitted"] += [f"{name}/seed{seed}" for seed, (_, train) in seeds.items() if train <= 0.55]
    values = [fold["cnn_accuracy"] for fold in record["folds"].values()]
    record["cnn_mean_accuracy"] = sum(values) / len(values)
    record["cnn_max_seed_range"] = max(fold["cnn_accuracy_range"] for fold in record["folds"].values())
    record["cnn_mean_seed_range"] = 0.02
    record["mean_baseline_accuracy"] = 0.5
    record["cnn_mean_image_accuracy"] = 0.5
    record["features_mean_accuracy"] = 0.75 if features else None
    return record


def write_stage(
    results: Path, stage: str, model: str, metrics: dict, predictions: pd.DataFrame | None, skip: tuple[str, ...] = ()
) -> None:
    if stage in skip:
        return
    folder = results / stage / model
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if predictions is not None:
        predictions.to_csv(folder / "predictions.csv", index=False)


def write_results(
    results: Path, model: str, fold_fits: dict[str, dict[int, tuple[float, float]]], skip: tuple[str, ...] = ()
) -> None:
    """Every stage's output of one model but the skipped ones, as the stages write them (keys the report reads)."""
    classes = CLASSES[model]
    images = [f"{name}{number}" for name in classes for number in (1, 2)]
    train = {
        "test_accuracy": 0.9375,
        "train_accuracy": 0.99,
        "val_accuracy": 0.95,
        "train_val_gap": 0.04,
        "baseline_accuracy": 0.5,
        "fit": "ok",
        "fit_chance_upper": 0.55,
        "best_epoch": 3,
        "epochs_run": 5,
        "test_image_accuracy": 1.0,
    }
    write_stage(results, "train", model, train, prediction_rows(classes, images, 1), skip)
    baseline = {"test_accuracy": 0.875, "baseline_accuracy": 0.5, "train_accuracy": 1.0, "val_accuracy": 0.9}
    write_stage(results, "baseline", model, baseline, prediction_rows(classes, images, 2), skip)
    control = {
        "test_accuracy": 0.5,
        "baseline_accuracy": 0.5,
        "chance_accuracy": 0.5,
        "chance_margin": 0.15,
        "image_calls": 4,
        "image_calls_correct": 2,
        "image_p_value": 0.69,
        "permutation_accuracies": {"permutation1": 0.5},
        "leak_suspected": False,
    }
    write_stage(
        results, "control", model, control, prediction_rows(classes, images, 8, permutation="permutation1"), skip
    )
    crossval = held_out_record(fold_fits, features=True)
    frames = [
        prediction_rows(
            classes, [f"{name}{number}" for name in classes], 3, fold=f"fold{number}", method=method
        ).assign(seed=seed)
        for number in (1, 2)
        for method, seeds in (("cnn", SEEDS), ("features", SEEDS[:1]))
        for seed in seeds
    ]
    write_stage(results, "crossval", model, crossval, pd.concat(frames), skip)
    untuned = held_out_record({"fold1": {42: (0.7, 0.97), 43: (0.74, 0.98)}, "fold2": {42: (0.8, 0.99)}}, False)
    write_stage(results, "crossval-untuned", model, untuned, None, skip)
    nonsense = {
        "status": "ok",
        "classes": {f"{classes[0]}1+{classes[1]}1": [], f"{classes[0]}2+{classes[1]}2": []},
        "seeds": list(SEEDS),
        "patch_split": {
            "test_accuracy": 0.85,
            "test_accuracy_min": 0.8,
            "test_accuracy_max": 0.9,
            "train_accuracy": 0.95,
            "baseline_accuracy": 0.5,
            "fits_failed": 0,
        },
        "held_out": held_out_record({"fold1": {42: (0.61, 0.9), 43: (0.63, 0.9)}, "fold2": {42: (0.6, 0.9)}}, False),
    }
    write_stage(results, "nonsense", model, nonsense, None, skip)
    greyscale = {"patches": 16, "auroc": 0.97, "auroc_stain": 0.98, "auroc_embedding": 0.6, "detection_rate": 0.9}
    familiarity = {
        "threshold": 1.2,
        "false_alarm_rate": 0.08,
        "false_alarm_rate_target": 0.05,
        "false_alarm_rate_max_image": 0.2,
        "image_share": 0.5,
        "held_out_images_flagged_crossfit": 1,
        "held_out_image_share_crossfit": {"X1": 0.6, "X2": 0.0, "Y1": 0.1, "Y2": 0.0},
        "transformations": {"greyscale": {**greyscale, "images": 4, "images_flagged": 3}},
    }
    write_stage(results, "familiarity", model, familiarity, None, skip)


def write_significance(results: Path, params_file: Path) -> None:
    """The significance stage of both models on what the stages left (as dvc repro runs it before the report)."""
    for model in CLASSES:
        significance.run(model, results, results / "significance" / model, params_file)


FITTED = {"fold1": {42: (0.8, 0.98), 43: (0.84, 0.97)}, "fold2": {42: (0.86, 0.99), 43: (0.9, 0.99)}}


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A working directory and MLflow store of this test's own (MLflow's artifacts go under the working directory)."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_a_missing_input_stops_the_report_with_one_line_and_writes_nothing(
    tmp_path: Path, small_params_file: Path, isolated: str
) -> None:
    results, out = tmp_path / "results", tmp_path / "reports"
    write_results(results, "model1", FITTED)
    write_results(results, "model2", FITTED)
    missing = results / "nonsense" / "model2" / "metrics.json"
    missing.unlink()
    out.mkdir()
    (out / "report.md").write_text("the previous report")
    write_significance(results, small_params_file)  # it does not read the nonsense control
    with pytest.raises(PathcnnError) as raised:
        report.run(results, tmp_path / "patches", out, small_params_file)
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and str(missing) in message and "missing" in message
    assert "dvc repro" in message
    assert (out / "report.md").read_text() == "the previous report"
    assert sorted(path.name for path in out.iterdir()) == ["report.md"]  # no overview, html or figures
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow run was opened either


def test_unreadable_outdated_or_missing_predictions_are_named(tmp_path: Path) -> None:
    write_results(tmp_path, "model1", FITTED)
    predictions = tmp_path / "crossval" / "model1" / "predictions.csv"
    predictions.unlink()
    with pytest.raises(PathcnnError, match=r"crossval/model1/predictions\.csv: missing"):
        stage_results.read_model(tmp_path, "model1")
    metrics = tmp_path / "crossval" / "model1" / "metrics.json"
    metrics.write_text('{"status": "not_possible", "reason": "class A has one image"}')
    assert (
        stage_results.read_model(tmp_path, "model1")[0]["crossval"]["status"] == "not_possible"
    )  # no predictions needed
    metrics.write_text("{not json")
    with pytest.raises(PathcnnError, match=r"crossval/model1/metrics\.json: unreadable"):
        stage_results.read_model(tmp_path, "model1")
    metrics.write_text('{"status": "ok", "folds": {}}')  # crossval written before the seeds
    with pytest.raises(PathcnnError, match=r"lacks seeds, cnn_mean_accuracy, cnn_max_seed_range"):
        stage_results.read_model(tmp_path, "model1")


def test_the_report_opens_with_the_overview_and_logs_its_files_to_mlflow(
    tmp_path: Path, small_params_file: Path, isolated: str
) -> None:
    results, out = tmp_path / "results", tmp_path / "reports"
    write_results(results, "model1", FITTED)
    unfitted = {"fold1": {42: (0.8, 0.98), 43: (0.5, 0.488)}, "fold2": {42: (0.6, 0.99), 43: (0.62, 0.99)}}
    write_results(results, "model2", unfitted)
    write_significance(results, small_params_file)
    report.run(results, tmp_path / "patches", out, small_params_file)
    text = (out / "report.md").read_text()
    assert (out / "overview.png").stat().st_size > 0
    assert text.index("![Overview") < text.index("## Answers")
    model1 = text.split("## model1:")[1].split("## model2:")[0]
    assert "| held out: fold1 | fold1 | 0.820 | 0.800-0.840 | 0.975 | 0 of 2 | 0.750 | 0.500 |" in model1
    assert "| held out, nonsense labels: mean |  | 0.610 | largest fold range 0.020 |" in model1
    assert "| patch split, nonsense labels | patches of all images | 0.850 | 0.800-0.900 |" in model1
    assert "clear the nonsense-label floor (0.610)" in model1
    assert "| held out, untuned: fold1 | fold1 | 0.720 | 0.700-0.740 | 0.975 | 0 of 2 |  | 0.500 |" in model1
    assert "| held out, untuned: mean |  | 0.760 |" in model1
    # Predict's check for unfamiliar images, as the familiarity stage measured it.
    assert "a new H&E image would have 8.0% of its patches flagged (cross-fitted; worst image 20.0%)" in model1
    assert "more than 50% are, which 1 of 4 held-out H&E images were (cross-fitted)" in model1
    assert "| greyscale | 16 | 0.97 | 0.98 | 0.60 | 0.900 | 3 of 4 |" in model1
    assert "tuned against untuned values (tune.space start values): tuned 0.850, untuned 0.760" in text
    assert "so the tuned figure is optimistic" not in text  # the study scored the validation split (val_loss)
    model2 = text.split("## model2:")[1]
    assert "The CNN of fold1, seed 43 did not fit" in model2 and "0.488" in model2
    assert "part of the patch-split figure is within-image memorisation" not in model2  # unfitted: never memorisation
    assert "part of the patch-split figure is within-image memorisation" not in model1  # 0.9375 - 0.85: no drop
    client = MlflowClient(isolated)
    experiment = client.get_experiment_by_name("pathcnn-report")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "report" and run.info.status == "FINISHED"
    logged = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert logged == {"overview.png", "report.md", "report.html"}


def test_a_study_scored_on_held_out_images_makes_the_report_call_the_tuned_figure_optimistic(
    tmp_path: Path, small_params_file: Path, isolated: str
) -> None:
    import yaml

    params = yaml.safe_load(small_params_file.read_text())
    params["tune"]["objective"] = "held_out_accuracy"
    small_params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    results, out = tmp_path / "results", tmp_path / "reports"
    for model in ("model1", "model2"):
        write_results(results, model, FITTED)
    write_significance(results, small_params_file)
    report.run(results, tmp_path / "patches", out, small_params_file)
    text = (out / "report.md").read_text()
    assert "tuned 0.850, untuned 0.760" in text
    # In the overview's reasons and in each model's Findings: both models, both places.
    assert text.count("so the tuned figure is optimistic") == 4


def test_the_report_shows_the_significance_stage_statistics_not_its_own(
    tmp_path: Path, small_params_file: Path, isolated: str
) -> None:
    """The report computes no statistic: change the significance file and the report shows the changed value."""
    results, out = tmp_path / "results", tmp_path / "reports"
    for model in CLASSES:
        write_results(results, model, FITTED)
    write_significance(results, small_params_file)
    path = results / "significance" / "model1" / "metrics.json"
    record = json.loads(path.read_text())
    # 15 of 16 test patches right: Wilson's interval, as scipy gives it, is what the stage wrote.
    assert record["stats"]["train"]["accuracy"] == 0.9375 and record["stats"]["train"]["n"] == 16
    assert record["bootstrap_resamples"] == 100 and record["seed"] == 42
    record["stats"]["train"]["ci_low"], record["stats"]["train"]["ci_high"] = 0.123, 0.987
    path.write_text(json.dumps(record))
    report.run(results, tmp_path / "patches", out, small_params_file)
    text = (out / "report.md").read_text()
    assert "0.938 [0.123, 0.987]" in text.split("## model1:")[1]
    assert "(100 resamples, seed 42)" in text


def test_a_missing_significance_record_stops_the_report_with_one_line(
    tmp_path: Path, small_params_file: Path, isolated: str
) -> None:
    results = tmp_path / "results"
    for model in CLASSES:
        write_results(results, model, FITTED)
    with pytest.raises(PathcnnError, match=r"significance/model1/metrics\.json: missing; run `dvc repro`"):
        report.run(results, tmp_path / "patches", tmp_path / "reports", small_params_file)
    (results / "train" / "model1" / "predictions.csv").unlink()
    with pytest.raises(PathcnnError, match=r"train/model1/predictions\.csv: missing"):
        significance.run("model1", results, results / "significance" / "model1", small_params_file)
    assert not (results / "significance" / "model1").exists()
