"""Command-line arguments shared by the per-model stages (tune, train, baseline, control, crossval, nonsense).

Every path is required: dvc.yaml passes them, so the paths of the pipeline are written in one place.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PARAMS_HELP = "params file (default params.yaml, as DVC reads it)"


def add_params_argument(parser: argparse.ArgumentParser) -> None:
    """--params: the one path with a default, DVC's own params file."""
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help=PARAMS_HELP)


def add_model_arguments(parser: argparse.ArgumentParser, split: bool = True, tuned: bool = False) -> None:
    """--model, --patches, [--split], [--tuned], --out and --params."""
    parser.add_argument("--model", required=True, help="model name from params.yaml (e.g. model1)")
    parser.add_argument("--patches", type=Path, required=True, help="the patches stage's folder (data/patches)")
    if split:
        parser.add_argument("--split", type=Path, required=True, help="the split stage's file of the model")
    if tuned:
        parser.add_argument(
            "--tuned",
            type=Path,
            help="best_params.json of the tune stage (without it, `tuned` train fields take their start values)",
        )
    parser.add_argument("--out", type=Path, required=True, help="output folder (results/<stage>/<model>)")
    add_params_argument(parser)
