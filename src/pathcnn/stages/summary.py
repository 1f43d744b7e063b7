"""`pathcnn summary`: a table of every model's accuracies beside its baselines, read from the metrics files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pathcnn.params import load_params

COLUMNS = (
    ("train", "train", "train_accuracy"),
    ("val", "train", "val_accuracy"),
    ("test", "train", "test_accuracy"),
    ("majority", "train", "baseline_accuracy"),
    ("features", "baseline", "test_accuracy"),
    ("shuffled", "control", "test_accuracy"),
    ("held-out img", "crossval", "cnn_mean_accuracy"),
)


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def summary_rows(results_dir: Path, models: list[str]) -> list[list[str]]:
    """One row per model; '-' where a stage has not produced its metrics."""
    rows = []
    for model in models:
        row = [model]
        for _, stage, key in COLUMNS:
            value = _read(results_dir / stage / model / "metrics.json").get(key)
            row.append(f"{value:.3f}" if isinstance(value, (int, float)) else "-")
        rows.append(row)
    return rows


def format_table(rows: list[list[str]]) -> str:
    """A plain fixed-width table."""
    header = ["model", *(name for name, _, _ in COLUMNS)]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments."""
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))


def main(args: argparse.Namespace) -> None:
    """Print the table."""
    models = list(load_params(args.params).models)
    print("accuracy per model (test = 90:10 patch split; majority = always the most frequent training class)")
    print(format_table(summary_rows(args.results, models)))
