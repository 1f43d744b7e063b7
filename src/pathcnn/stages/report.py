"""Stage `report`: reports/report.md, a self-contained report.html and reports/overview.png, from the results.

Every number is read from results/: the stages' metrics and predictions, and the significance stage's
intervals and p-values. The conclusions are the rules in `pathcnn.findings`; `pathcnn.rendering` draws and
writes. A missing or unreadable input stops the stage with one line before anything is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pathcnn.console import say
from pathcnn.params import load_params
from pathcnn.rendering import write_report
from pathcnn.results import load_results
from pathcnn.stages.arguments import add_params_argument


def run(results_dir: Path, patches_dir: Path, out_dir: Path, params_path: Path) -> Path:
    """Write the report into out_dir and log its files to one MLflow run; nothing is written if an input is unusable."""
    from pathcnn import tracking

    params = load_params(params_path)
    chosen_on_folds = params.tune.objective.held_out
    results = [load_results(results_dir, name, spec.classes, chosen_on_folds) for name, spec in params.models.items()]
    experiment = tracking.experiment_name(params.base.experiment_prefix, "report")
    with tracking.tracked_run(experiment, "report", "report", {"models": ",".join(params.models)}):
        written = write_report(results, results_dir, patches_dir, out_dir, params)
        for path in written:
            tracking.log_artifact(path)
    say(f"report: wrote {', '.join(str(path) for path in written)}")
    return out_dir / "report.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line arguments of the stage."""
    parser.add_argument("--results", type=Path, required=True, help="folder of the stages' results (results)")
    parser.add_argument("--patches", type=Path, required=True, help="for the example-patch grids (data/patches)")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder of report.md, report.html, overview.png, figures/report/"
    )
    add_params_argument(parser)


def main(args: argparse.Namespace) -> None:
    """Run the stage from parsed arguments."""
    run(args.results, args.patches, args.out, args.params)
