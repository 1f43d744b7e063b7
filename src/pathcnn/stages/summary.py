"""Stage `summary`: each model's headline numbers in one small metrics file; `pathcnn summary` prints them all.

The headline file (results/summary/<model>.json) is the only `metrics:` entry of dvc.yaml, so `dvc metrics
show` and `dvc exp show` compare experiments on these few numbers. Each is copied, unrounded, from the
metrics file of the stage that measured it; the full records stay outputs of their stages.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pathcnn.artifacts import write_json
from pathcnn.console import say
from pathcnn.errors import PathcnnError
from pathcnn.params import load_params
from pathcnn.stages.arguments import add_params_argument

# (column shown, key in the headline file, stage whose metrics.json holds it, dotted key there)
COLUMNS = (
    ("train", "train", "train", "train_accuracy"),
    ("val", "val", "train", "val_accuracy"),
    ("test", "test", "train", "test_accuracy"),
    ("majority", "majority", "train", "baseline_accuracy"),
    ("features", "features", "baseline", "test_accuracy"),
    ("shuffled", "shuffled", "control", "test_accuracy"),
    ("held-out img", "held_out", "crossval", "cnn_mean_accuracy"),
    ("seed range", "held_out_seed_range", "crossval", "cnn_max_seed_range"),
    ("held-out feat", "held_out_features", "crossval", "features_mean_accuracy"),
    ("held-out untuned", "held_out_untuned", "crossval-untuned", "cnn_mean_accuracy"),
    ("nonsense test", "nonsense_test", "nonsense", "patch_split.test_accuracy"),
    ("nonsense held-out", "nonsense_held_out", "nonsense", "held_out.cnn_mean_accuracy"),
)


def _read(path: Path, strict: bool) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        if strict:
            raise PathcnnError(f"{path}: cannot read the stage's metrics ({error}); run `dvc repro` first") from None
        return {}


def headline(results_dir: Path, model: str, strict: bool = True) -> dict[str, float | None]:
    """The model's headline numbers from the stages' metrics files (None where a stage gives no value)."""
    records = {stage: _read(results_dir / stage / model / "metrics.json", strict) for _, _, stage, _ in COLUMNS}
    values: dict[str, float | None] = {}
    for _, name, stage, key in COLUMNS:
        value: Any = records[stage]
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        values[name] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return values


def summary_rows(results_dir: Path, models: list[str]) -> list[list[str]]:
    """One row per model; '-' where a stage has not produced its metrics."""
    rows = []
    for model in models:
        values = headline(results_dir, model, strict=False)
        rows.append([model, *(f"{values[name]:.3f}" if values[name] is not None else "-" for _, name, _, _ in COLUMNS)])
    return rows


def format_table(rows: list[list[str]]) -> str:
    """A plain fixed-width table."""
    header = ["model", *(shown for shown, _, _, _ in COLUMNS)]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments."""
    parser.add_argument(
        "--results", type=Path, default=Path("results"), help="folder of the stages' results (default results)"
    )
    add_params_argument(parser)
    parser.add_argument("--model", help="write this model's headline file (the DVC stage) instead of printing")
    parser.add_argument("--out", type=Path, help="the headline file to write (with --model; dvc.yaml passes it)")


def main(args: argparse.Namespace) -> None:
    """Write one model's headline file (with --model), or print the table of every model."""
    models = list(load_params(args.params).models)
    if args.model:
        if args.model not in models:
            raise PathcnnError(f"--model {args.model}: no such model in {args.params} (known: {', '.join(models)})")
        if args.out is None:
            raise PathcnnError("--model needs --out, the headline file to write (results/summary/<model>.json)")
        values = headline(args.results, args.model)
        write_json(args.out, values)
        say(f"summary {args.model}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items() if v is not None))
        return
    print(
        "accuracy per model (test = 90:10 patch split; majority = always the most frequent training class; "
        "held-out img = mean over crossval folds and seeds, seed range = the largest spread of a fold; "
        "held-out untuned = the same with the tune.space start values; nonsense = classes "
        "that follow image identity)"
    )
    print(format_table(summary_rows(args.results, models)))
