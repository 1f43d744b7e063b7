"""Command-line arguments shared by the per-model stages (tune, train, baseline, control, crossval).

dvc.yaml passes every path; the defaults only serve a person running a stage by hand from the repo root.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_model_arguments(parser: argparse.ArgumentParser, stage: str, split: bool = True, tuned: bool = False) -> None:
    """--model, --patches, [--split], [--tuned], --out and --params."""
    parser.add_argument("--model", required=True, help="model name from params.yaml (e.g. model1)")
    parser.add_argument("--patches", type=Path, default=Path("data/patches"), help="patches stage output")
    if split:
        parser.add_argument("--split", type=Path, help="split file (default data/splits/<model>.csv)")
    if tuned:
        parser.add_argument(
            "--tuned",
            type=Path,
            help="best_params.json of the tune stage (without it, `tuned` train fields take their start values)",
        )
    parser.add_argument("--out", type=Path, help=f"output folder (default results/{stage}/<model>)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))


def split_file(args: argparse.Namespace) -> Path:
    """--split, or the split stage's file of the model."""
    return args.split or Path(f"data/splits/{args.model}.csv")


def out_dir(args: argparse.Namespace, stage: str) -> Path:
    """--out, or results/<stage>/<model>."""
    return args.out or Path(f"results/{stage}/{args.model}")
