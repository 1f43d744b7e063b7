"""Stage `significance`: intervals, p-values and McNemar's test of one model's stored predictions.

Reads the train, baseline, control and crossval stages' metrics and predictions and writes
results/significance/<model>/metrics.json, which the report reads instead of computing statistics itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pathcnn.artifacts import write_json
from pathcnn.console import say
from pathcnn.params import load_params
from pathcnn.results import WITH_PREDICTIONS, read_model
from pathcnn.significance import model_statistics
from pathcnn.stages.arguments import add_params_argument


def run(model_name: str, results_dir: Path, out_dir: Path, params_path: Path) -> dict[str, Any]:
    """Compute the model's significance record and write it as out_dir/metrics.json."""
    params = load_params(params_path)
    classes = params.model(model_name).classes
    metrics, predictions = read_model(results_dir, model_name, WITH_PREDICTIONS)
    record = model_statistics(metrics, predictions, classes, params.significance.bootstrap_resamples, params.base.seed)
    write_json(out_dir / "metrics.json", record)
    test = record["stats"]["train"]
    say(
        f"significance {model_name}: test accuracy {test['accuracy']:.3f} "
        f"(95% CI {test['ci_low']:.3f}-{test['ci_high']:.3f}, p {test['p_value']:.3g} against the majority rate)"
    )
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of the stage."""
    parser.add_argument("--model", required=True, help="model name from params.yaml (e.g. model1)")
    parser.add_argument("--results", type=Path, required=True, help="folder of the stages' results (results)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (results/significance/<model>)")
    add_params_argument(parser)


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    run(args.model, args.results, args.out, args.params)
