"""Stage `report`: reports/report.md and a self-contained report.html, built only from the metrics files.

Every number is read from results/ (or computed from the stored predictions); the answers to the three
questions follow explicit rules over those numbers, written out in `findings`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pathcnn.artifacts import atomic_directory, atomic_path
from pathcnn.console import say
from pathcnn.figures import confusion_figure, save_figure
from pathcnn.params import Params, load_params
from pathcnn.patchsets import read_manifest
from pathcnn.reporting import example_grid, interval, markdown_to_html, number, p_value, table
from pathcnn.significance import best_possible_image_p_value, paired_comparison, prediction_statistics
from pathcnn.stats import chance_rate

STAGES = ("train", "baseline", "control", "crossval")
FIGURES = Path("figures") / "report"
SIGNIFICANCE = 0.05
MEMORISATION_DROP = 0.10  # patch-split minus image-held-out accuracy above this: within-image memorisation
OVERFIT_GAP = 0.10
FOLD_DISAGREEMENT = 0.20


@dataclass
class ModelResults:
    """What the stages left for one model, plus the statistics the report computes from it."""

    name: str
    classes: tuple[str, ...]
    metrics: dict[str, dict[str, Any]]
    predictions: dict[str, pd.DataFrame]
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparison: dict[str, Any] | None = None
    heldout_comparison: dict[str, Any] | None = None

    @property
    def crossval_ok(self) -> bool:
        return self.metrics["crossval"].get("status") == "ok"

    @property
    def chance(self) -> float:
        return chance_rate(self.metrics["train"].get("baseline_accuracy", 0.0), len(self.classes))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def load_results(results_dir: Path, name: str, classes: tuple[str, ...], params: Params) -> ModelResults:
    """Read every stage's metrics and predictions of one model and compute the statistics."""
    metrics = {stage: _read_json(results_dir / stage / name / "metrics.json") for stage in STAGES}
    predictions = {stage: _read_csv(results_dir / stage / name / "predictions.csv") for stage in STAGES}
    results = ModelResults(name, classes, metrics, predictions)
    resamples, seed = params.report.bootstrap_resamples, params.base.seed
    for stage in ("train", "baseline", "control"):
        frame = predictions[stage]
        if not frame.empty and metrics[stage]:
            if "permutation" in frame:  # the control's models: each permutation calls each image once
                frame = frame.assign(image_id=frame["permutation"] + "/" + frame["image_id"])
            null = metrics[stage]["baseline_accuracy"]
            results.stats[stage] = prediction_statistics(frame, classes, null, resamples, seed)
    if not predictions["train"].empty and not predictions["baseline"].empty:
        results.comparison = paired_comparison(predictions["train"], predictions["baseline"])
    if results.crossval_ok and not predictions["crossval"].empty:
        folds = metrics["crossval"]["folds"]
        pooled = predictions["crossval"]
        # Pooled over folds, each patch tested once; the null rate is the folds' majority rates weighted by size.
        null = sum(f["baseline_accuracy"] * f["n_test"] for f in folds.values()) / sum(
            f["n_test"] for f in folds.values()
        )
        for method in ("cnn", "features"):
            subset = pooled[pooled["method"] == method]
            results.stats[f"crossval_{method}"] = prediction_statistics(subset, classes, null, resamples, seed)
        results.heldout_comparison = paired_comparison(
            pooled[pooled["method"] == "cnn"].assign(patch_id=lambda f: f["fold"] + "/" + f["patch_id"]),
            pooled[pooled["method"] == "features"].assign(patch_id=lambda f: f["fold"] + "/" + f["patch_id"]),
        )
    return results


# ---------------------------------------------------------------- findings (rules over the numbers)


def winner(comparison: dict[str, Any]) -> str:
    """Which side of a CNN-vs-features McNemar comparison was right more often alone."""
    return "CNN" if comparison["only_first_correct"] > comparison["only_second_correct"] else "feature baseline"


def unfitted_folds(crossval: dict[str, Any]) -> list[str]:
    """The crossval folds whose CNN did not fit its own training patches (fit 'failed')."""
    return [name for name, fold in (crossval.get("folds") or {}).items() if fold.get("cnn_fit") == "failed"]


def did_not_fit_line(what: str, train_accuracy: float, bound: float | None) -> str:
    """The finding for a fit whose training accuracy lies within chance: not memorisation, not generalisation."""
    within = f" (chance reaches up to {number(bound)})" if bound is not None else ""
    return (
        f"{what} did not fit: its accuracy on its own training patches, {number(train_accuracy)}, lies within "
        f"chance{within}. Its other figures describe an untrained network, neither memorisation nor "
        "generalisation."
    )


def unfitted_fold_lines(crossval: dict[str, Any]) -> list[str]:
    """One did-not-fit finding per crossval fold whose CNN did not fit."""
    folds = crossval.get("folds") or {}
    return [
        did_not_fit_line(
            f"The CNN of fold {name}", folds[name]["cnn_train_accuracy"], folds[name].get("cnn_fit_chance_upper")
        )
        for name in unfitted_folds(crossval)
    ]


def findings(result: ModelResults, target: float | None) -> list[str]:
    """The reasons behind a model's numbers, each derived from measurements by an explicit rule."""
    lines: list[str] = []
    train, cnn = result.metrics["train"], result.stats.get("train")
    if not train or cnn is None:
        lines.append(f"{result.name}: the train stage has not produced metrics; nothing can be concluded about it.")
        lines.extend(unfitted_fold_lines(result.metrics["crossval"]))
        if result.metrics["crossval"].get("status") == "not_possible":
            lines.append(f"Image-held-out cross-validation was not possible ({result.metrics['crossval']['reason']}).")
        return lines
    patch_accuracy = train["test_accuracy"]
    if train.get("train_val_gap", 0.0) > OVERFIT_GAP:
        lines.append(
            f"Training accuracy exceeds validation accuracy by {number(train['train_val_gap'])} "
            f"(more than {number(OVERFIT_GAP, 2)}): the CNN overfits its training patches."
        )
    if train.get("fit") == "failed":
        lines.append(did_not_fit_line("The final CNN", train["train_accuracy"], train.get("fit_chance_upper")))
    elif "fit" not in train and train.get("train_accuracy", 1.0) <= result.chance + 0.05:
        lines.append(
            f"Training accuracy {number(train['train_accuracy'])} is close to chance ({number(result.chance)}): "
            "the CNN underfits (it did not learn even its training patches)."
        )
    heldout = result.stats.get("crossval_cnn")
    if result.crossval_ok and heldout is not None:
        crossval = result.metrics["crossval"]
        mean = crossval["cnn_mean_accuracy"]
        chance_inside = heldout["ci_low"] <= heldout["null_rate"]
        unfitted = unfitted_folds(crossval)
        lines.extend(unfitted_fold_lines(crossval))
        if unfitted:
            lines.append(
                f"The held-out mean {number(mean)} includes {len(unfitted)} fold(s) that did not fit, so it is not "
                "read as within-image memorisation or as generalisation; fix the fit first."
            )
        elif chance_inside:
            lines.append(
                f"On held-out images the CNN scores {number(heldout['accuracy'])} (95% CI "
                f"{interval(heldout['ci_low'], heldout['ci_high'])}), an interval that contains the majority rate "
                f"{number(heldout['null_rate'])}: it cannot be told from chance on unseen images, so the patch-split "
                f"test accuracy {number(patch_accuracy)} reflects within-image memorisation."
            )
        elif patch_accuracy - mean > MEMORISATION_DROP:
            lines.append(
                f"Test accuracy falls from {number(patch_accuracy)} (patch split) to a mean of {number(mean)} on "
                f"held-out images (more than {number(MEMORISATION_DROP, 2)} lower): part of the patch-split figure is "
                "within-image memorisation (patches of one image sit in both train and test)."
            )
        else:
            lines.append(
                f"Held-out-image accuracy (mean {number(mean)}, pooled 95% CI "
                f"{interval(heldout['ci_low'], heldout['ci_high'])}) stays within {number(MEMORISATION_DROP, 2)} of "
                f"the patch-split test accuracy {number(patch_accuracy)}: little sign of within-image memorisation."
            )
        fold_values = [fold["cnn_accuracy"] for fold in crossval["folds"].values()]
        if max(fold_values) - min(fold_values) > FOLD_DISAGREEMENT:
            lines.append(
                "The folds disagree ("
                + ", ".join(f"{name} {number(f['cnn_accuracy'])}" for name, f in crossval["folds"].items())
                + "): accuracy depends on which image is held out, and with this few images the report cannot say "
                "which fold is typical."
            )
        if target is not None:
            met = all(value >= target for value in fold_values)
            lines.append(
                f"Target (every fold >= {number(target, 2)} on held-out images): "
                + ("met." if met else f"not met (CNN per fold: {', '.join(number(v) for v in fold_values)}).")
            )
        images = heldout["image_n"]
        lines.append(
            f"Image level: {heldout['image_correct']} of {images} held-out images classified correctly by mean "
            f"patch probability; even all {images} correct would give p = "
            f"{p_value(best_possible_image_p_value(images, 1.0 / len(result.classes)))} against guessing, so with this "
            "few images no image-level claim reaches significance, and patch-level p-values (which treat "
            "patches of one image as independent) overstate the evidence."
        )
    elif not result.crossval_ok:
        reason = result.metrics["crossval"].get("reason", "the crossval stage has not run")
        lines.append(
            f"Image-held-out cross-validation was not possible ({reason}); whether the patch-split accuracy "
            "generalises to new images cannot be concluded."
        )
    if result.comparison is not None and "baseline" in result.stats:
        features = result.stats["baseline"]
        comparison = result.comparison
        if comparison["p_value"] >= SIGNIFICANCE:
            lines.append(
                f"On the patch-split test patches the CNN ({number(cnn['accuracy'])}) does not differ significantly "
                f"from the colour/texture baseline ({number(features['accuracy'])}; McNemar p = "
                f"{p_value(comparison['p_value'])})."
            )
        else:
            lines.append(
                f"On the patch-split test patches the {winner(comparison)} is significantly better "
                f"(CNN {number(cnn['accuracy'])}, features {number(features['accuracy'])}; "
                f"McNemar p = {p_value(comparison['p_value'])})."
            )
    if result.heldout_comparison is not None:
        crossval = result.metrics["crossval"]
        comparison = result.heldout_comparison
        verdict = (
            "do not differ significantly"
            if comparison["p_value"] >= SIGNIFICANCE
            else f"differ significantly, in favour of the {winner(comparison)}"
        )
        lines.append(
            f"On held-out images the CNN (mean {number(crossval['cnn_mean_accuracy'])}) and the feature baseline "
            f"(mean {number(crossval['features_mean_accuracy'])}) {verdict} (McNemar p = "
            f"{p_value(comparison['p_value'])})."
        )
    control = result.metrics["control"]
    if control:
        if control.get("leak_suspected"):
            lines.append(
                f"WARNING: the shuffled-label control scores {number(control['test_accuracy'])}, more than "
                f"{number(control['chance_margin'], 2)} above chance ({number(control['chance_accuracy'])}), and is "
                f"right on {control['image_calls_correct']} of {control['image_calls']} image calls (p = "
                f"{p_value(control['image_p_value'])}): the evaluation leaks information; the test accuracies above "
                "are not trustworthy."
            )
        else:
            spread = ", ".join(number(value) for value in control.get("permutation_accuracies", {}).values())
            lines.append(
                f"The shuffled-label control scores {number(control['test_accuracy'])} (mean of {spread}; chance "
                f"{number(control['chance_accuracy'])}; {control['image_calls_correct']} of {control['image_calls']} "
                f"image calls right, p = {p_value(control['image_p_value'])}): no sign that labels leak through the "
                "split or the pipeline. Single shuffled models swing widely because test patches cluster by image."
            )
    return lines


def best_model(results: list[ModelResults]) -> tuple[ModelResults, str]:
    """The best model and the criterion: image-held-out CNN accuracy when every model has it, else patch split."""
    if all(r.crossval_ok for r in results):
        return max(results, key=lambda r: r.metrics["crossval"]["cnn_mean_accuracy"]), "held-out"
    scored = [r for r in results if r.metrics["train"]]
    return max(scored, key=lambda r: r.metrics["train"]["test_accuracy"]), "patch"


# ---------------------------------------------------------------- the document


def accuracy_cell(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "n/a"
    return f"{number(stats['accuracy'])} {interval(stats['ci_low'], stats['ci_high'])}"


def answer_training(result: ModelResults) -> str:
    train = result.metrics["train"]
    if not train:
        return f"**{result.name}** ({' vs '.join(result.classes)}): the train stage has not produced metrics."
    return (
        f"**{result.name}** ({' vs '.join(result.classes)}): training accuracy {number(train['train_accuracy'])}, "
        f"validation accuracy {number(train['val_accuracy'])} (train-validation gap {number(train['train_val_gap'])}; "
        f"best epoch {train.get('best_epoch')} of {train.get('epochs_run')}). Test accuracy on the patch split: "
        f"{accuracy_cell(result.stats.get('train'))}, majority baseline {number(train['baseline_accuracy'])}."
    )


def main_table(result: ModelResults) -> str:
    """Test-patch statistics of the CNN, the feature baseline and the shuffled-label control."""
    header = ["patch-split test", "accuracy [95% Wilson CI]", "p vs majority", "balanced accuracy [bootstrap CI]"]
    header += ["AUC [bootstrap CI]", "images correct", "train acc", "val acc"]
    rows = []
    for stage, label in (
        ("train", "CNN"),
        ("baseline", "colour/texture features"),
        ("control", "CNN, shuffled labels"),
    ):
        stats, metrics = result.stats.get(stage), result.metrics[stage]
        if not stats:
            rows.append([label, "not run", "", "", "", "", "", ""])
            continue
        rows.append(
            [
                label,
                accuracy_cell(stats),
                p_value(stats["p_value"]),
                f"{number(stats['balanced_accuracy'])} "
                f"{interval(stats['balanced_accuracy_low'], stats['balanced_accuracy_high'])}",
                f"{number(stats['auc'])} {interval(stats['auc_low'], stats['auc_high'])}",
                f"{stats['image_correct']}/{stats['image_n']}",
                number(metrics.get("train_accuracy")),
                number(metrics.get("val_accuracy")),
            ]
        )
    majority = result.metrics["train"].get("baseline_accuracy")
    rows.append(["majority class", number(majority), "", "", "", "", "", ""])
    return table(header, rows)


def split_table(result: ModelResults) -> str:
    """Patch split next to every image-held-out fold."""
    train, baseline = result.metrics["train"], result.metrics["baseline"]
    header = ["evaluation", "test images", "CNN accuracy", "features accuracy", "majority", "CNN image-level"]
    rows = [
        [
            "patch split (90:10)",
            "patches of all images",
            number(train.get("test_accuracy")),
            number(baseline.get("test_accuracy")),
            number(train.get("baseline_accuracy")),
            number(train.get("test_image_accuracy")),
        ]
    ]
    crossval = result.metrics["crossval"]
    if result.crossval_ok:
        for name, fold in crossval["folds"].items():
            rows.append(
                [
                    f"held out: {name}",
                    fold["test_images"],
                    number(fold["cnn_accuracy"]),
                    number(fold["features_accuracy"]),
                    number(fold["baseline_accuracy"]),
                    number(fold["cnn_image_accuracy"]),
                ]
            )
        rows.append(
            [
                "held out: mean",
                "",
                number(crossval["cnn_mean_accuracy"]),
                number(crossval["features_mean_accuracy"]),
                number(crossval["mean_baseline_accuracy"]),
                number(crossval["cnn_mean_image_accuracy"]),
            ]
        )
    return table(header, rows)


def model_section(result: ModelResults, figures: dict[str, list[str]], target: float | None) -> list[str]:
    lines = [f"## {result.name}: {' vs '.join(result.classes)}", "", main_table(result), ""]
    if result.comparison is not None:
        c = result.comparison
        lines += [
            f"McNemar, CNN vs features on the same {c['n']} test patches: only the CNN right on "
            f"{c['only_first_correct']}, only the features right on {c['only_second_correct']}, "
            f"p = {p_value(c['p_value'])}.",
            "",
        ]
    lines += ["### Patch split vs image held out", "", split_table(result), ""]
    crossval = result.metrics["crossval"]
    if result.crossval_ok:
        for method, label in (("cnn", "CNN"), ("features", "features")):
            s = result.stats[f"crossval_{method}"]
            lines.append(
                f"- Held-out images pooled over folds, {label}: {accuracy_cell(s)}, p vs majority "
                f"{p_value(s['p_value'])}, balanced accuracy {number(s['balanced_accuracy'])} "
                f"{interval(s['balanced_accuracy_low'], s['balanced_accuracy_high'])}, "
                f"{s['image_correct']}/{s['image_n']} images correct."
            )
        lines.append("")
    elif crossval:
        lines += [f"Image-held-out cross-validation not possible: {crossval.get('reason')}", ""]
    else:
        lines += ["Image-held-out cross-validation: the crossval stage has not run.", ""]
    lines += ["### Findings", ""] + [f"- {line}" for line in findings(result, target)] + [""]
    for key, caption in (
        ("confusion", "Confusion matrices (rows actual, columns predicted)"),
        ("history", "Training curves"),
        ("examples", "Most confident correct and wrong patch-split test patches per class (CNN)"),
    ):
        paths = figures.get(key, [])
        if paths:
            images = " ".join(f"![{result.name} {key}]({path})" for path in paths)
            lines += [f"**{caption}**", "", images, ""]
    return lines


def draw_figures(
    result: ModelResults, results_dir: Path, patches_dir: Path, figures_dir: Path, per_class: int
) -> dict[str, list[str]]:
    """Confusion matrices, the training curves and the example grid; relative paths for the Markdown."""
    figures: dict[str, list[str]] = {}
    panels = [(stage, title) for stage, title in (("train", "CNN"), ("baseline", "features")) if result.metrics[stage]]
    if result.crossval_ok:
        panels.append(("crossval", "CNN, images held out"))
    confusion_paths = []
    for stage, title in panels:
        frame = result.predictions[stage]
        if stage == "crossval":
            frame = frame[frame["method"] == "cnn"]
        matrix = pd.crosstab(
            pd.Categorical(frame["label"], result.classes),
            pd.Categorical(frame["predicted"], result.classes),
            dropna=False,
        ).to_numpy()
        name = f"{result.name}_confusion_{stage}.png"
        save_figure(confusion_figure(matrix, result.classes, f"{result.name} {title}"), figures_dir / name)
        confusion_paths.append((FIGURES / name).as_posix())
    if confusion_paths:
        figures["confusion"] = confusion_paths
    history = results_dir / "train" / result.name / "history.png"
    if history.exists():
        shutil.copyfile(history, figures_dir / f"{result.name}_history.png")
        figures["history"] = [(FIGURES / f"{result.name}_history.png").as_posix()]
    predictions = result.predictions["train"]
    if not predictions.empty and (patches_dir / "manifest.csv").exists():
        grid = example_grid(
            predictions, read_manifest(patches_dir), patches_dir, result.classes, per_class, f"{result.name} test"
        )
        save_figure(grid, figures_dir / f"{result.name}_examples.png")
        figures["examples"] = [(FIGURES / f"{result.name}_examples.png").as_posix()]
    return figures


def build_markdown(results: list[ModelResults], figures: dict[str, dict[str, list[str]]], params: Params) -> str:
    """The whole report as Markdown."""
    lines = [
        "# pathcnn report",
        "",
        "Every number below is read from the metrics and prediction files under `results/` (written by the "
        "train, baseline, control and crossval stages) or computed from them; none is typed in by hand. "
        "Patch split = the task's random 90:10 split of patches, so patches of one image sit in train and test; "
        "held out = leave-one-image-out per class, the test images unseen in training.",
        "",
        "## Answers",
        "",
    ]
    for index, result in enumerate(results[:2]):
        lines += [
            f"### {index + 1}. Training and validation accuracy of {result.name}",
            "",
            answer_training(result),
            "",
        ]
    for result in results[2:]:
        lines += [f"### Also: {result.name}", "", answer_training(result), ""]
    lines += ["### 3. Which model performed best on its dataset, and why", ""]
    if not any(r.metrics["train"] for r in results):
        lines += ["No model has metrics yet: run `dvc repro`.", ""]
    else:
        best, criterion = best_model(results)
        if criterion == "held-out":
            ranking = ", ".join(
                f"{r.name} {number(r.metrics['crossval']['cnn_mean_accuracy'])}"
                for r in sorted(results, key=lambda r: -r.metrics["crossval"].get("cnn_mean_accuracy", 0.0))
            )
            lines.append(
                f"Ranked by CNN accuracy on held-out images (mean over folds), the measure of performance on new "
                f"images: {ranking}. **{best.name}** performed best."
            )
        else:
            ranking = ", ".join(f"{r.name} {number(r.metrics['train'].get('test_accuracy'))}" for r in results)
            lines.append(
                f"Image-held-out accuracy is not available for every model, so the ranking uses the patch-split test "
                f"accuracy, which mixes in within-image memorisation: {ranking}. **{best.name}** scored highest."
            )
        patch_best = max((r for r in results if r.metrics["train"]), key=lambda r: r.metrics["train"]["test_accuracy"])
        if criterion == "held-out" and patch_best.name != best.name:
            lines.append(
                f"On the patch split {patch_best.name} ranks first instead: the two measures disagree, and only the "
                "held-out one speaks to new images."
            )
        features = [r for r in results if r.crossval_ok]
        if len(features) == len(results) and len(results) > 1:
            easiest = max(features, key=lambda r: r.metrics["crossval"]["features_mean_accuracy"])
            lines.append(
                "The colour/texture baseline on held-out images reaches "
                + ", ".join(f"{r.name} {number(r.metrics['crossval']['features_mean_accuracy'])}" for r in features)
                + f": by simple colour and texture statistics {easiest.name}'s classes are the easier pair to tell "
                "apart, which is a likely reason for differences between the models."
            )
        lines += ["", "Reasons, per model (each derived from the numbers in its section):", ""]
        for result in results:
            lines += [f"- **{result.name}**:"] + [
                f"  - {line}" for line in findings(result, params.report.targets.get(result.name))
            ]
        lines.append("")
    for result in results:
        lines += model_section(result, figures.get(result.name, {}), params.report.targets.get(result.name))
    lines += [
        "## How to read this report",
        "",
        "- Wilson 95% intervals and one-sided exact binomial p-values compare each test accuracy with the "
        "majority-class rate; they treat patches as independent, which patches of one image are not.",
        f"- Balanced accuracy and AUC intervals: percentile bootstrap over test patches "
        f"({params.report.bootstrap_resamples} resamples, seed {params.base.seed}).",
        "- McNemar's exact test compares the CNN and the feature baseline on the same test patches.",
        "- Image-level accuracy: each image is called by the mean of its patches' class probabilities.",
        "",
    ]
    return "\n".join(lines)


def run(results_dir: Path, patches_dir: Path, out_dir: Path, params_path: Path) -> Path:
    """Write report.md, report.html and their figures into out_dir."""
    params = load_params(params_path)
    results = [load_results(results_dir, name, spec.classes, params) for name, spec in params.models.items()]
    with atomic_directory(out_dir / FIGURES) as staging:
        figures = {
            r.name: draw_figures(r, results_dir, patches_dir, staging, params.report.example_patches) for r in results
        }
    markdown = build_markdown(results, figures, params)
    with atomic_path(out_dir / "report.md") as temporary:
        temporary.write_text(markdown, encoding="utf-8")
    with atomic_path(out_dir / "report.html") as temporary:
        temporary.write_text(markdown_to_html(markdown, out_dir, "pathcnn report"), encoding="utf-8")
    say(f"report: wrote {out_dir / 'report.md'} and {out_dir / 'report.html'}")
    return out_dir / "report.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of the stage."""
    parser.add_argument("--results", type=Path, default=Path("results"), help="folder of the stages' metrics")
    parser.add_argument("--patches", type=Path, default=Path("data/patches"), help="for the example-patch grids")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="report.md, report.html, figures/report/")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    run(args.results, args.patches, args.out, args.params)
