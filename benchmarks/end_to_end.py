"""Benchmark 4: `dvc repro` of the whole pipeline in a temporary copy of the repo, from clean and when cached."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path
from typing import Any


def timed(command: list[str], cwd: Path, environment: dict[str, str]) -> float:
    """Run a command to completion and return its wall time; stop with its output if it fails."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {cwd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds


def run(repo: str) -> dict[str, Any]:
    """`dvc repro` from a clean state, then again with everything cached (a no-op)."""
    root = Path(repo)
    environment = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{(root / 'mlflow.db').as_posix()}"}
    clean = timed(["dvc", "repro"], root, environment)
    cached = timed(["dvc", "repro"], root, environment)
    stages = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=root, capture_output=True, text=True)
    return {
        "clean_seconds": clean,
        "noop_seconds": cached,
        "stages": len(stages.stdout.split()),
        # Largest single process among dvc and the stage commands it ran.
        "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
