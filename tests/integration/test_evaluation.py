"""Honest evaluation: the shuffled-label control, crossval that cannot run, and the report read from dvc repro."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from pathcnn.errors import PathcnnError
from pathcnn.params import TrainParams
from pathcnn.patchsets import PatchSet
from pathcnn.significance import accuracy_summary
from tests.conftest import mlflow_uri, prepare_repo_copy, run_command
from tests.unit.test_report import FITTED, write_results, write_significance

pytestmark = pytest.mark.slow


def bright_or_dark(count: int, seed: int) -> PatchSet:
    """Noise patches whose class is their brightness: trivially learnable with the true labels."""
    generator = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    base = np.where(labels[:, None, None, None] == 1, 170, 60)
    patches = np.clip(base + generator.integers(-40, 40, (count, 24, 24, 3)), 0, 255).astype(np.uint8)
    frame = pd.DataFrame(
        {"patch_id": [f"p{seed}_{i}" for i in range(count)], "image_id": [f"{'AB'[y]}{seed}" for y in labels]}
    ).assign(label=["AB"[y] for y in labels], index=range(count))
    return PatchSet(patches, labels.astype(np.int64), frame)


def test_permutation_control_lands_near_chance_where_true_labels_are_learnt() -> None:
    from pathcnn.stages.control import permuted_sets
    from pathcnn.training import train_and_evaluate

    sets = {"train": bright_or_dark(96, 1), "val": bright_or_dark(24, 2), "test": bright_or_dark(60, 3)}
    # No batch norm (its moving averages would not settle in a few dozen steps) and a high learning rate.
    params = TrainParams(
        conv_blocks=2,
        filters=4,
        dense_units=8,
        batch_size=16,
        patience=10,
        augment=False,
        batch_norm=False,
        learning_rate=0.02,
    )
    true_labels = train_and_evaluate(sets, ("A", "B"), params, seed=0, max_epochs=10).evaluation.metrics
    shuffled = train_and_evaluate(permuted_sets(sets, 0), ("A", "B"), params, seed=0, max_epochs=10)
    shuffled = shuffled.evaluation.metrics
    assert true_labels["test_accuracy"] >= 0.9
    # 60 balanced test patches: a signal-free model's accuracy has a standard deviation of about 0.065 around 0.5.
    assert abs(shuffled["test_accuracy"] - shuffled["baseline_accuracy"]) <= 0.2


def test_crossval_with_a_one_image_class_says_so_and_the_report_states_it(
    tmp_path: Path, small_params_file: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathcnn.stages import crossval, report

    monkeypatch.chdir(tmp_path)  # MLflow writes artifacts under the working directory
    patches = tmp_path / "patches"
    patches.mkdir()
    rows = []
    for image in ("A1", "B1", "B2"):
        np.save(patches / f"{image}.npy", np.full((3, 100, 100, 3), 128, np.uint8))
        rows += [(f"{image}_{i}", image, image[0], True, i) for i in range(3)]
    pd.DataFrame(rows, columns=["patch_id", "image_id", "label", "kept", "index"]).to_csv(
        patches / "manifest.csv", index=False
    )
    results = tmp_path / "results"
    out = results / "crossval" / "model1"
    result = crossval.run("model1", patches, None, out, small_params_file)
    written = json.loads((out / "metrics.json").read_text())
    assert result["status"] == written["status"] == "not_possible"
    assert "class A (1)" in written["reason"]
    # The other stages have not run: the report stops with one line naming the first missing file.
    with pytest.raises(PathcnnError, match=r"^\S*results/train/model1/metrics\.json: missing; run `dvc repro`"):
        report.run(results, patches, tmp_path / "reports", small_params_file)
    assert not (tmp_path / "reports").exists()
    # With the other stages' outputs in place (hand-made), the report states why crossval was not possible.
    for model in ("model1", "model2"):
        write_results(results, model, FITTED, skip=("crossval",) if model == "model1" else ())
    write_significance(results, small_params_file)
    report.run(results, tmp_path / "no-patches", tmp_path / "reports", small_params_file)
    text = (tmp_path / "reports" / "report.md").read_text()
    assert f"Image-held-out cross-validation not possible: {written['reason']}" in text


def test_a_crossval_fold_that_cannot_fit_is_reported_as_not_fitted(
    tmp_path: Path, small_images: Path, small_params_file: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Learning rate ~0: no fit learns its training patches; metrics, MLflow and the report say "did not fit"."""
    import yaml

    from pathcnn.stages import crossval, patches, report

    monkeypatch.chdir(tmp_path)  # MLflow writes artifacts under the working directory
    params = yaml.safe_load(small_params_file.read_text())
    params["train"].update(learning_rate=1e-12, use_tuned=False, augment=False)
    small_params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    patches.run(small_images, tmp_path / "patches", tmp_path / "grids", small_params_file)
    results = tmp_path / "results"
    for model in ("model1", "model2"):  # hand-made outputs of the other stages, so that the report can run
        write_results(results, model, FITTED, skip=("crossval",) if model == "model1" else ())
    out = results / "crossval" / "model1"
    crossval.run("model1", tmp_path / "patches", None, out, small_params_file)
    written = json.loads((out / "metrics.json").read_text())
    fits = [f"{name}/{seed}" for name, fold in written["folds"].items() for seed in fold["seeds"]]
    assert len(fits) == len(written["folds"]) * len(written["seeds"])
    assert written["cnn_folds_not_fitted"] == fits
    assert all(fold["cnn_fit"] == "failed" for fold in written["folds"].values())
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("pathcnn-model1")
    folds = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'crossval-fold'")
    assert {run.data.tags["fit"] for run in folds} == {"failed"}
    write_significance(results, small_params_file)
    report.run(results, tmp_path / "no-patches", tmp_path / "reports", small_params_file)
    section = (tmp_path / "reports" / "report.md").read_text().split("## model1:")[1].split("## model2:")[0]
    for name, fold in written["folds"].items():
        for seed in fold["seeds"]:
            assert f"The CNN of {name}, seed {seed.removeprefix('seed')} did not fit" in section
    assert "part of the patch-split figure is within-image memorisation" not in section
    assert f"| held out: mean |  | {written['cnn_mean_accuracy']:.3f} |" in section


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory, small_images: Path) -> Path:
    """dvc repro of the whole pipeline, report and summaries included, in a repo copy on small crops."""
    monkeypatch = pytest.MonkeyPatch()
    root = prepare_repo_copy(tmp_path_factory.mktemp("evaluation") / "repo", small_images)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri(root))
    run_command(["dvc", "repro"], root, timeout=1500)  # report and the headline summaries
    yield root
    monkeypatch.undo()


def metrics_of(root: Path, stage: str, model: str) -> dict:
    return json.loads((root / "results" / stage / model / "metrics.json").read_text())


def test_report_numbers_equal_the_metrics_files(reproduced: Path) -> None:
    text = (reproduced / "reports" / "report.md").read_text()
    for model in ("model1", "model2"):
        train = metrics_of(reproduced, "train", model)
        answer = re.search(
            rf"\*\*{model}\*\* \([A-Z] vs [A-Z]\): training accuracy (\d\.\d{{3}}), validation accuracy (\d\.\d{{3}})",
            text,
        )
        assert answer, f"no answer line for {model}"
        assert float(answer.group(1)) == round(train["train_accuracy"], 3)
        assert float(answer.group(2)) == round(train["val_accuracy"], 3)
        section = text.split(f"## {model}:")[1]
        patch_row = re.search(
            r"\| patch split \(90:10\) \| [^|]+ \| (\S+) \| one fit \| \S+ \| \d of 1 \| (\S+) \| (\S+) \|", section
        )
        baseline = metrics_of(reproduced, "baseline", model)
        assert float(patch_row.group(1)) == round(train["test_accuracy"], 3)
        assert float(patch_row.group(2)) == round(baseline["test_accuracy"], 3)
        assert float(patch_row.group(3)) == round(train["baseline_accuracy"], 3)
        crossval = metrics_of(reproduced, "crossval", model)
        mean_row = re.search(
            r"\| held out: mean \|  \| (\S+) \| largest fold range (\S+) \|  \| \d+ of \d+ \| (\S+) \|", section
        )
        assert float(mean_row.group(1)) == round(crossval["cnn_mean_accuracy"], 3)
        assert float(mean_row.group(2)) == round(crossval["cnn_max_seed_range"], 3)
        assert float(mean_row.group(3)) == round(crossval["features_mean_accuracy"], 3)
        for name, fold in crossval["folds"].items():
            seeds = f"{fold['cnn_accuracy_min']:.3f}-{fold['cnn_accuracy_max']:.3f}"
            assert f"| held out: {name} | {fold['test_images']} | {fold['cnn_accuracy']:.3f} | {seeds} |" in section
        untuned = metrics_of(reproduced, "crossval-untuned", model)
        assert f"| held out, untuned: mean |  | {untuned['cnn_mean_accuracy']:.3f} |" in section
        # The pooled held-out CNN: n = the distinct test patches, not patches x seeds; its interval spans the seeds'.
        cnn = pd.read_csv(reproduced / "results" / "crossval" / model / "predictions.csv").query("method == 'cnn'")
        per_seed = [
            accuracy_summary((fits["predicted"] == fits["label"]).to_numpy(), 0.5) for _, fits in cnn.groupby("seed")
        ]
        assert {summary["n"] for summary in per_seed} == {cnn["patch_id"].nunique()}
        accuracy = float(np.mean([summary["accuracy"] for summary in per_seed]))
        low, high = min(s["ci_low"] for s in per_seed), max(s["ci_high"] for s in per_seed)
        pooled = "Held-out images pooled over folds, CNN (mean of seeds; interval and p: the least favourable seed): "
        assert f"{pooled}{accuracy:.3f} [{low:.3f}, {high:.3f}]" in section
        nonsense = metrics_of(reproduced, "nonsense", model)
        patch = nonsense["patch_split"]
        assert f"| patch split, nonsense labels | patches of all images | {patch['test_accuracy']:.3f} |" in section
        if nonsense["held_out"]["status"] == "ok":
            held = nonsense["held_out"]["cnn_mean_accuracy"]
            assert f"| held out, nonsense labels: mean |  | {held:.3f} |" in section
        control = metrics_of(reproduced, "control", model)
        assert f"shuffled-label control scores {control['test_accuracy']:.3f}" in section
    html = (reproduced / "reports" / "report.html").read_text()
    assert "data:image/png;base64," in html and 'src="figures/' not in html


def test_report_overview_comes_first_and_is_a_dvc_plot_and_an_mlflow_artifact(reproduced: Path) -> None:
    text = (reproduced / "reports" / "report.md").read_text()
    assert text.index("![Overview") < text.index("## Answers")
    assert (reproduced / "reports" / "overview.png").stat().st_size > 0
    shown = json.loads(run_command(["dvc", "plots", "show", "--json"], reproduced).stdout)
    assert "reports/overview.png" in shown["data"]
    client = MlflowClient(mlflow_uri(reproduced))
    experiment = client.get_experiment_by_name("pathcnn-report")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "report" and run.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"overview.png", "report.md", "report.html"}


def test_evaluation_metrics_are_dvc_metrics_and_mlflow_runs(reproduced: Path) -> None:
    shown = json.loads(run_command(["dvc", "metrics", "show", "--json"], reproduced).stdout)
    files = {name for entry in shown.values() for name in entry.get("data", {})}
    assert "results/summary/model1.json" in files  # the headline numbers; the full records are outputs
    for stage in ("baseline", "control", "crossval", "crossval-untuned", "nonsense", "significance"):
        assert (reproduced / "results" / stage / "model1" / "metrics.json").exists()
    client = MlflowClient(mlflow_uri(reproduced))
    experiment = client.get_experiment_by_name("pathcnn-model1")
    # Two folds, each fitted with every seed (crossval.seeds, 2 in the test params); the nonsense control fits
    # the patch split and its two folds with every seed.
    counts = {"baseline": 1, "control": 1, "crossval": 1, "crossval-fold": 4, "nonsense": 1, "nonsense-fit": 6}
    counts |= {"crossval-untuned": 1, "crossval-untuned-fold": 4}
    for kind, count in counts.items():
        runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.kind = '{kind}'")
        assert len(runs) == count, kind
        assert all(run.info.status == "FINISHED" for run in runs)
    folds = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'crossval-fold'")
    parent = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'crossval'")[0]
    assert {run.data.tags["mlflow.parentRunId"] for run in folds} == {parent.info.run_id}
    assert {run.data.tags["split_strategy"] for run in folds} == {"image"}
    status = run_command(["dvc", "status"], reproduced).stdout
    assert "changed" not in status
