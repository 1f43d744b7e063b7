"""The report rendered: Markdown sections and tables, figures and the self-contained HTML, from ModelResults.

Only rendering: the numbers come from the stages' files (pathcnn.results), the conclusions from the rules
in pathcnn.findings.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from pathcnn import findings as rules
from pathcnn.artifacts import atomic_directory, atomic_path
from pathcnn.figures import Column, Estimate, Panel, confusion_figure, overview_figure, save_figure
from pathcnn.params import Params
from pathcnn.patchsets import read_manifest
from pathcnn.reporting import example_grid, interval, markdown_to_html, number, p_value, table
from pathcnn.results import ModelResults

FIGURES = Path("figures") / "report"
OVERVIEW = Path("overview.png")
COLOURS = {
    "cnn": "tab:blue",
    "untuned": "tab:cyan",
    "features": "tab:orange",
    "nonsense": "tab:gray",
    "shuffled": "tab:red",
}


def accuracy_cell(stats: dict[str, Any]) -> str:
    return f"{number(stats['accuracy'])} {interval(stats['ci_low'], stats['ci_high'])}"


def seed_range(low: float | None, high: float | None) -> str:
    """A min-max range over seeds."""
    return f"{number(low)}-{number(high)}"


def answer_training(result: ModelResults) -> str:
    train = result.metrics["train"]
    return (
        f"**{result.name}** ({' vs '.join(result.classes)}): training accuracy {number(train['train_accuracy'])}, "
        f"validation accuracy {number(train['val_accuracy'])} (train-validation gap {number(train['train_val_gap'])}; "
        f"best epoch {train.get('best_epoch')} of {train.get('epochs_run')}). Test accuracy on the patch split: "
        f"{accuracy_cell(result.stats['train'])}, majority baseline {number(train['baseline_accuracy'])}."
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
        stats, metrics = result.stats[stage], result.metrics[stage]
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
    rows.append(["majority class", number(result.metrics["train"]["baseline_accuracy"]), "", "", "", "", "", ""])
    return table(header, rows)


SPLIT_HEADER = [
    "evaluation",
    "test images",
    "CNN accuracy (mean)",
    "CNN seed min-max",
    "CNN train acc",
    "CNN fits failed",
    "features accuracy",
    "majority",
    "CNN image-level",
]


def held_out_rows(record: dict[str, Any], label: str, features: bool) -> list[list[str]]:
    """One row per fold (CNN mean over seeds, seed range, fits failed) and a mean row, of a crossval-shaped record."""
    seeds = len(record["seeds"])
    rows = [
        [
            f"{label}: {name}",
            fold["test_images"],
            number(fold["cnn_accuracy"]),
            seed_range(fold["cnn_accuracy_min"], fold["cnn_accuracy_max"]),
            number(fold["cnn_train_accuracy"]),
            f"{fold['cnn_fits_failed']} of {seeds}",
            number(fold.get("features_accuracy")) if features else "",
            number(fold["baseline_accuracy"]),
            number(fold["cnn_image_accuracy"]),
        ]
        for name, fold in record["folds"].items()
    ]
    rows.append(
        [
            f"{label}: mean",
            "",
            number(record["cnn_mean_accuracy"]),
            f"largest fold range {number(record['cnn_max_seed_range'])}",
            "",
            f"{len(record['cnn_folds_not_fitted'])} of {rules.fit_count(record)}",
            number(record.get("features_mean_accuracy")) if features else "",
            number(record["mean_baseline_accuracy"]),
            number(record["cnn_mean_image_accuracy"]),
        ]
    )
    return rows


def split_table(result: ModelResults) -> str:
    """Patch split next to every image-held-out fold, each beside its nonsense-label control."""
    train, baseline = result.metrics["train"], result.metrics["baseline"]
    rows = [
        [
            "patch split (90:10)",
            "patches of all images",
            number(train["test_accuracy"]),
            "one fit",
            number(train["train_accuracy"]),
            f"{int(train.get('fit') == 'failed')} of 1",
            number(baseline["test_accuracy"]),
            number(train["baseline_accuracy"]),
            number(train.get("test_image_accuracy")),
        ]
    ]
    nonsense = result.metrics["nonsense"]
    if result.nonsense_ok:
        patch = nonsense["patch_split"]
        rows.append(
            [
                "patch split, nonsense labels",
                "patches of all images",
                number(patch["test_accuracy"]),
                seed_range(patch["test_accuracy_min"], patch["test_accuracy_max"]),
                number(patch["train_accuracy"]),
                f"{patch['fits_failed']} of {len(nonsense['seeds'])}",
                "",
                number(patch["baseline_accuracy"]),
                "",
            ]
        )
    if result.crossval_ok:
        rows += held_out_rows(result.metrics["crossval"], "held out", features=True)
    if result.untuned_ok:
        rows += held_out_rows(result.metrics["crossval-untuned"], "held out, untuned", features=False)
    if result.nonsense_held_out_ok:
        rows += held_out_rows(nonsense["held_out"], "held out, nonsense labels", features=False)
    return table(SPLIT_HEADER, rows)


def split_notes(result: ModelResults) -> list[str]:
    """What the rows of the split table mean, and what was not possible."""
    lines = []
    crossval, nonsense = result.metrics["crossval"], result.metrics["nonsense"]
    if result.crossval_ok:
        seeds = ", ".join(str(seed) for seed in crossval["seeds"])
        lines.append(
            f"- CNN accuracy per fold: mean over its fits with seeds {seeds}; seed min-max is their range, and a "
            "difference no larger than the seed-to-seed spread is noise, not a finding."
        )
    else:
        lines.append(f"- Image-held-out cross-validation not possible: {crossval['reason']}")
    if result.untuned_ok:
        lines.append(
            "- Held out, untuned: the same folds and seeds with the tune.space start values instead of the study's "
            "best values (stage crossval-untuned)."
        )
    if result.nonsense_ok:
        classes = " vs ".join(f"{name} ({', '.join(images)})" for name, images in nonsense["classes"].items())
        lines.append(
            f"- Nonsense labels: the same CNN trained on classes that follow image identity, {classes}. "
            "Patch split, nonsense labels: what the task's patch-split metric gives labels that mean nothing. "
            "Held out, nonsense labels: the floor a real model's held-out accuracy must clear."
        )
        if not result.nonsense_held_out_ok:
            lines.append(f"- Held out, nonsense labels: not possible: {nonsense['held_out']['reason']}")
    else:
        lines.append(f"- Nonsense-label control not possible: {nonsense['reason']}")
    return lines


def pooled_lines(result: ModelResults) -> list[str]:
    """The held-out predictions pooled over folds; the CNN's per seed, then combined (significance.over_seeds)."""
    lines = []
    for method, label in (
        ("cnn", "CNN (mean of seeds; interval and p: the least favourable seed)"),
        ("features", "features"),
    ):
        s = result.stats[f"crossval_{method}"]
        lines.append(
            f"- Held-out images pooled over folds, {label}: {accuracy_cell(s)}, p vs majority "
            f"{p_value(s['p_value'])}, balanced accuracy {number(s['balanced_accuracy'])} "
            f"{interval(s['balanced_accuracy_low'], s['balanced_accuracy_high'])}, "
            f"{s['image_correct']}/{s['image_n']} image calls correct."
        )
    return lines


def model_section(result: ModelResults, figures: dict[str, list[str]], target: float | None) -> list[str]:
    lines = [f"## {result.name}: {' vs '.join(result.classes)}", "", main_table(result), ""]
    c = result.comparison
    if c:
        lines += [
            f"McNemar, CNN vs features on the same {c['n']} test patches: only the CNN right on "
            f"{c['only_first_correct']}, only the features right on {c['only_second_correct']}, "
            f"p = {p_value(c['p_value'])}.",
            "",
        ]
    lines += ["### Patch split vs image held out, beside the nonsense-label control", "", split_table(result), ""]
    lines += split_notes(result) + [""]
    if result.crossval_ok:
        lines += pooled_lines(result) + [""]
    lines += ["### Findings", ""] + [f"- {line}" for line in rules.model_findings(result, target)] + [""]
    lines += calibration_lines(result.significance.get("calibration"))
    lines += familiarity_lines(result.metrics["familiarity"])
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


def calibration_lines(record: dict[str, Any] | None) -> list[str]:
    """Expected calibration error before and after temperature scaling, and the held-out reliability curve."""
    if not record:
        return []
    held, test = record["held_out"], record["patch_split_test"]
    verdict = (
        "it helps on images it was not fitted on"
        if record["temperature_helps"]
        else "it does not help on images it was not fitted on, so predict reports the probabilities unscaled"
    )
    rows = [
        [f"{b['low']:.1f}-{b['high']:.1f}", str(b["n"]), number(b["confidence"]), number(b["accuracy"])]
        for b in held["before"]["curve"]
    ]
    return [
        "### Are the probabilities calibrated?",
        "",
        "Expected calibration error (top-class probability against accuracy, in bins of 0.1; the held-out "
        f"curve below has {len(rows)} non-empty bins) "
        f"of the CNN on held-out images (crossval, every seed): {number(held['before']['ece'])}; after temperature "
        f"scaling fitted on the other folds (cross-fitted): {number(held['after']['ece'])}: {verdict}. On the "
        f"patch-split test: {number(test['before']['ece'])}, and {number(test['after']['ece'])} with the "
        f"temperature fitted on all folds (T = {number(record['temperature'], 2)}).",
        "",
        table(["held-out probability", "predictions (patches x seeds)", "mean probability", "accuracy"], rows),
        "",
    ]


def familiarity_lines(record: dict[str, Any]) -> list[str]:
    """Predict's check for unfamiliar images: its calibrated false alarms and what it detects."""
    if record.get("status", "ok") != "ok":
        return ["### Unfamiliar images (predict's check)", "", f"Not possible: {record['reason']}", ""]
    rows = [
        [
            name.replace("_", " "),
            str(found["patches"]),
            number(found["auroc"], 2),
            number(found["auroc_stain"], 2),
            number(found["auroc_embedding"], 2),
            number(found["detection_rate"]),
            f"{found['images_flagged']} of {found['images']}",
        ]
        for name, found in record["transformations"].items()
    ]
    header = [
        "transformation",
        "patches",
        "AUROC",
        "AUROC stain",
        "AUROC embedding",
        "flagged at threshold",
        "images uncertain",
    ]
    return [
        "### Unfamiliar images (predict's check)",
        "",
        f"Each image held out in turn, scored against the other images' training patches: at the threshold "
        f"(set for {record['false_alarm_rate_target']:.0%} of held-out patches), a new H&E image would have "
        f"{record['false_alarm_rate']:.1%} of its patches flagged (cross-fitted; worst image "
        f"{record['false_alarm_rate_max_image']:.1%}); an image is called uncertain when more than "
        f"{record['image_share']:.0%} are, which {record['held_out_images_flagged_crossfit']} of "
        f"{len(record['held_out_image_share_crossfit'])} held-out H&E images were (cross-fitted). "
        "Transformed copies of the held-out images and non-tissue pictures, "
        "never used to set the threshold:",
        "",
        table(header, rows),
        "",
    ]


def fold_estimates(record: dict[str, Any]) -> tuple[Estimate, ...]:
    """Per fold of a crossval-shaped record: the CNN's mean over seeds with its seed min-max."""
    if record.get("status") != "ok":
        return ()
    return tuple(
        Estimate(fold["cnn_accuracy"], fold["cnn_accuracy_min"], fold["cnn_accuracy_max"], name)
        for name, fold in record["folds"].items()
    )


def overview_panel(result: ModelResults) -> Panel:
    """The model's accuracies for the overview figure, read from its metrics files."""
    train, crossval, nonsense = result.metrics["train"], result.metrics["crossval"], result.metrics["nonsense"]
    patch = nonsense.get("patch_split")
    columns = (
        Column("CNN\npatch split", COLOURS["cnn"], (Estimate(train["test_accuracy"]),)),
        Column("CNN\nheld out", COLOURS["cnn"], fold_estimates(crossval), per_fold=True),
        Column(
            "CNN\nheld out\nuntuned",
            COLOURS["untuned"],
            fold_estimates(result.metrics["crossval-untuned"]),
            per_fold=True,
        ),
        Column("features\npatch split", COLOURS["features"], (Estimate(result.metrics["baseline"]["test_accuracy"]),)),
        Column(
            "features\nheld out",
            COLOURS["features"],
            (Estimate(crossval["features_mean_accuracy"]),) if result.crossval_ok else (),
        ),
        Column(
            "nonsense\npatch split",
            COLOURS["nonsense"],
            (Estimate(patch["test_accuracy"], patch["test_accuracy_min"], patch["test_accuracy_max"]),)
            if patch
            else (),
        ),
        Column("nonsense\nheld out", COLOURS["nonsense"], fold_estimates(nonsense.get("held_out", {})), per_fold=True),
        Column("shuffled\nlabels", COLOURS["shuffled"], (Estimate(result.metrics["control"]["test_accuracy"]),)),
    )
    return Panel(f"{result.name}: {' vs '.join(result.classes)}", columns, train["baseline_accuracy"])


def overview_lines() -> list[str]:
    """The overview figure and what it shows."""
    return [
        f"![Overview: every accuracy per model]({OVERVIEW.as_posix()})",
        "",
        "**Overview.** Per model: the CNN's test accuracy on the patch split (train stage); its accuracy on "
        "held-out images per fold (point = mean over seeds, bar = seed min-max), with the study's values and "
        "untuned (tune.space start values); the colour/texture features on "
        "the patch split and on held-out images (mean over folds); the nonsense-label control on the patch split "
        "(mean, seed min-max) and on held-out images per fold; the shuffled-label control; dashed line = the "
        "majority-class rate of the patch-split test patches.",
        "",
    ]


def draw_figures(
    result: ModelResults, results_dir: Path, patches_dir: Path, figures_dir: Path, per_class: int
) -> dict[str, list[str]]:
    """Confusion matrices, the training curves and the example grid; relative paths for the Markdown."""
    figures: dict[str, list[str]] = {}
    panels = [("train", "CNN"), ("baseline", "features")]
    if result.crossval_ok:
        panels.append(("crossval", "CNN, images held out (all seeds)"))
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
    figures["confusion"] = confusion_paths
    history = results_dir / "train" / result.name / "history.png"
    if history.exists():
        shutil.copyfile(history, figures_dir / f"{result.name}_history.png")
        figures["history"] = [(FIGURES / f"{result.name}_history.png").as_posix()]
    if (patches_dir / "manifest.csv").exists():
        grid = example_grid(
            result.predictions["train"],
            read_manifest(patches_dir),
            patches_dir,
            result.classes,
            per_class,
            f"{result.name} test",
        )
        save_figure(grid, figures_dir / f"{result.name}_examples.png")
        figures["examples"] = [(FIGURES / f"{result.name}_examples.png").as_posix()]
    return figures


def build_markdown(results: list[ModelResults], figures: dict[str, dict[str, list[str]]], params: Params) -> str:
    """The whole report as Markdown."""
    bootstrap = results[0].significance  # the significance stage's settings, the same for every model
    lines = [
        "# pathcnn report",
        "",
        "Every number below is read from the metrics and prediction files under `results/` (written by the "
        "train, baseline, control, crossval, crossval-untuned and nonsense stages, and the intervals and p-values "
        "by the significance stage) or computed from them; none is typed in by hand. "
        "Patch split = the task's random 90:10 split of patches, so patches of one image sit in train and test; "
        "held out = leave-one-image-out per class, the test images unseen in training.",
        "",
        *overview_lines(),
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
    lines += ["### 3. Which model performed best on its dataset, and why", "", " ".join(rules.ranking(results)), ""]
    lines += ["Reasons, per model (each derived from the numbers in its section):", ""]
    for result in results:
        lines += [f"- **{result.name}**:"] + [
            f"  - {line}" for line in rules.model_findings(result, params.report.targets.get(result.name))
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
        f"({bootstrap['bootstrap_resamples']} resamples, seed {bootstrap['seed']}).",
        "- McNemar's exact test compares the CNN and the feature baseline on the same test patches.",
        "- Image-level accuracy: each image is called by the mean of its patches' class probabilities.",
        "- Seed spread: each held-out fold's CNN is fitted once per seed. A difference between two means over "
        "folds no larger than how far such a mean moves from seed to seed (cnn_mean_seed_range: max - min of the "
        "seeds' means; the larger of the two figures' when two are compared) is treated as noise; folds are "
        "compared with each other against the largest single-fold seed range (cnn_max_seed_range).",
        "- The pooled held-out lines weigh every test patch equally, so they differ slightly from the headline "
        "held-out figure, the mean over folds.",
        "- Nonsense labels: classes that pair images across the real classes, so they mean nothing about tissue; "
        "a real model's held-out accuracy must clear theirs by more than the seed spread to count as evidence of "
        "tissue learning.",
        "",
    ]
    return "\n".join(lines)


def write_report(
    results: list[ModelResults], results_dir: Path, patches_dir: Path, out_dir: Path, params: Params
) -> list[Path]:
    """Draw the figures and write overview.png, report.md and report.html; returns the three files."""
    with atomic_directory(out_dir / FIGURES) as staging:
        figures = {
            r.name: draw_figures(r, results_dir, patches_dir, staging, params.report.example_patches) for r in results
        }
    save_figure(overview_figure([overview_panel(r) for r in results]), out_dir / OVERVIEW)
    markdown = build_markdown(results, figures, params)
    with atomic_path(out_dir / "report.md") as temporary:
        temporary.write_text(markdown, encoding="utf-8")
    with atomic_path(out_dir / "report.html") as temporary:
        temporary.write_text(markdown_to_html(markdown, out_dir, "pathcnn report"), encoding="utf-8")
    return [out_dir / OVERVIEW, out_dir / "report.md", out_dir / "report.html"]
