"""`pathcnn compare`: DVC experiments side by side, one row per experiment and model.

Reads `dvc exp show --json` (DVC's public CLI), keeps the params whose values differ between the rows
(like `--only-changed`) and each model's headline numbers from results/summary/<model>.json, so a terminal
shows what changed and what it did, instead of DVC's hundreds of columns.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from pathcnn.errors import PathcnnError

SUMMARY_FOLDER = PurePosixPath("results/summary")
# Headline columns in the order shown (the keys of results/summary/<model>.json).
METRICS = (
    "train",
    "val",
    "test",
    "majority",
    "features",
    "shuffled",
    "held_out",
    "held_out_seed_range",
    "held_out_features",
    "held_out_untuned",
    "nonsense_test",
    "nonsense_held_out",
)
# Column labels where a key is too wide for a terminal table (the file's key names are in docs/experiments.md).
LABELS = {
    "held_out_seed_range": "seed_range",
    "held_out_features": "feat_held",
    "held_out_untuned": "untuned",
    "nonsense_test": "nons_test",
    "nonsense_held_out": "nons_held",
}


@dataclass(frozen=True)
class Row:
    """One experiment (or the workspace, or a commit) as DVC reports it."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, dict[str, Any]]  # model -> headline numbers


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted names, as `dvc exp show` names them."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _row(name: str, data: Mapping[str, Any] | None) -> Row:
    data = data or {}
    params = flatten(((data.get("params") or {}).get("params.yaml") or {}).get("data") or {})
    metrics = {}
    for path, content in (data.get("metrics") or {}).items():
        file = PurePosixPath(path)
        if file.parent == SUMMARY_FOLDER and file.suffix == ".json":
            metrics[file.stem] = (content or {}).get("data") or {}
    return Row(name, params, metrics)


def rows_of(shown: list[dict[str, Any]]) -> Iterator[Row]:
    """The workspace, each baseline commit and its experiments, in `dvc exp show` order."""
    for baseline in shown:
        revision = baseline.get("rev", "")
        yield _row(
            "workspace" if revision == "workspace" else baseline.get("name") or revision[:7], baseline.get("data")
        )
        for experiment in baseline.get("experiments") or []:
            for run in experiment.get("revs") or []:
                yield _row(run.get("name") or run.get("rev", "")[:7], run.get("data"))


def changed_params(rows: list[Row]) -> list[str]:
    """Params whose values are not the same in every row."""
    names = sorted({name for row in rows for name in row.params})
    return [name for name in names if len({json.dumps(row.params.get(name)) for row in rows}) > 1]


def format_value(value: Any) -> str:
    """A headline number to 3 decimals; '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def table(rows: list[Row]) -> str:
    """One line per experiment and model: changed params, then the model's headline numbers."""
    params = changed_params(rows)
    models = sorted({model for row in rows for model in row.metrics})
    header = ["experiment", *params, "model", *(LABELS.get(metric, metric) for metric in METRICS)]
    lines = []
    for row in rows:
        for model in models or [""]:
            numbers = row.metrics.get(model, {})
            lines.append(
                [row.name, *("-" if p not in row.params else str(row.params[p]) for p in params), model]
                + [format_value(numbers.get(metric)) for metric in METRICS]
            )
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    rendered = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *lines]
    ]
    return "\n".join([rendered[0], "  ".join("-" * width for width in widths), *rendered[1:]])


def dvc_experiments(*arguments: str) -> list[dict[str, Any]]:
    """`dvc exp show --json` in the current repository."""
    command = ["dvc", "exp", "show", "--json", "--no-pager", *arguments]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise PathcnnError(f"dvc: cannot run ({error.strerror}); install the project (make venv)") from None
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise PathcnnError(f"dvc exp show failed: {message}; run it from the repository root")
    return json.loads(result.stdout)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments: passed on to `dvc exp show`."""
    parser.add_argument("--all-commits", "-A", action="store_true", help="experiments of every commit")
    parser.add_argument("--num", "-n", type=int, help="experiments of the last N commits")


def main(args: argparse.Namespace) -> None:
    """Print the table."""
    extra = ["-A"] if args.all_commits else []
    if args.num:
        extra += ["-n", str(args.num)]
    print(table(list(rows_of(dvc_experiments(*extra)))))
