"""The `pathcnn` command: one subcommand per DVC stage, plus predict. Errors print as one line."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

from pathcnn.errors import PathcnnError

# subcommand -> (module, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "patches": ("pathcnn.stages.patches", "cut images in data/raw into patches"),
    "split": ("pathcnn.stages.split", "train/validation/test split per model"),
    "tune": ("pathcnn.stages.tune", "Optuna study over the train params (resumable, parallel)"),
    "train": ("pathcnn.stages.train", "fit and evaluate the final CNN of one model"),
    "baseline": ("pathcnn.stages.baseline", "colour+texture logistic-regression baseline"),
    "control": ("pathcnn.stages.control", "label-permutation control (must be near chance)"),
    "crossval": ("pathcnn.stages.crossval", "leave-one-image-out cross-validation"),
    "nonsense": ("pathcnn.stages.nonsense", "the nonsense-label control: classes that follow image identity"),
    "familiarity": ("pathcnn.stages.familiarity", "calibrate and measure predict's check for unfamiliar images"),
    "significance": ("pathcnn.stages.significance", "intervals, p-values and McNemar of one model's predictions"),
    "report": ("pathcnn.stages.report", "write reports/report.md and report.html"),
    "summary": ("pathcnn.stages.summary", "print a table of every model's metrics"),
    "compare": ("pathcnn.experiments", "DVC experiments side by side: changed params, headline metrics"),
    "predict": ("pathcnn.predict", "classify new images, write CSVs and heatmaps"),
}

# Every pipeline stage closes MLflow runs abandoned by hard-killed processes before it starts.
STAGES_THAT_TRACK = frozenset(COMMANDS) - {"significance", "summary", "compare", "predict"}


def quiet_libraries() -> None:
    """Keep TensorFlow's and friends' start-up chatter out of the user's terminal and DVC logs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("mlflow", "alembic", "absl", "tensorflow", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: every command listed, the chosen one's module imported for its arguments.

    Only `command`'s module is imported (all of them when None), so running a stage loads that stage's code
    and nothing else: its dvc.yaml deps are its own import closure (tests/unit/test_dvc_deps.py).
    """
    parser = argparse.ArgumentParser(prog="pathcnn", description="Tracked, honest CNN experiments on H&E patches.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--debug", action="store_true", help="show full tracebacks")
        if command is not None and name != command:
            continue
        module = importlib.import_module(module_name)
        sub.description = (module.__doc__ or help_text).strip()
        module.add_arguments(sub)
        sub.set_defaults(handler=module.main)
    return parser


def chosen_command(arguments: list[str]) -> str | None:
    """The subcommand named on the command line (the first known command word), or None."""
    return next((word for word in arguments if word in COMMANDS), None)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a subcommand; 0 on success, 1 on a PathcnnError, 130 on Ctrl+C."""
    quiet_libraries()
    arguments = sys.argv[1:] if argv is None else argv
    debug = "--debug" in arguments
    try:
        args = build_parser(chosen_command(arguments)).parse_args(arguments)
        if args.command in STAGES_THAT_TRACK:
            from pathcnn.tracking import close_abandoned_runs

            close_abandoned_runs()
        args.handler(args)
    except PathcnnError as error:
        if debug:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        # A file the command had to write or read failed at the operating-system level (disk full, a folder
        # in the way, permissions): say which file and why, in one line.
        if debug:
            traceback.print_exc()
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}; check the path, free space and permissions", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
