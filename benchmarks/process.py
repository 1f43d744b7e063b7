"""Running one measurement in a fresh Python process, so its peak memory is its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "BENCH_RESULT "
MEGABYTE = 1024 * 1024


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) in MiB; unlike ru_maxrss it does not include the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """This process's resident memory now, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def stopwatch(times: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the block, in seconds, to times[name]."""
    start = time.perf_counter()
    try:
        yield
    finally:
        times[name] = times.get(name, 0.0) + time.perf_counter() - start


def child_environment() -> dict[str, str]:
    """The environment of a measurement process: quiet TensorFlow, the repo importable, the venv on PATH."""
    path = os.pathsep.join(filter(None, [str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    return {
        **os.environ,
        "PYTHONPATH": path,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "GIT_PYTHON_REFRESH": "quiet",
    }


def measure(task: str, config: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """Run benchmarks.<module>.<function>(**config) in a fresh interpreter and return its figures."""
    command = [sys.executable, "-m", "benchmarks.process", task, json.dumps(config)]
    result = subprocess.run(
        command, cwd=REPO, env=child_environment(), capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if result.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark {task} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return json.loads(lines[-1].removeprefix(RESULT_PREFIX))


def main() -> None:
    """Child side of measure(): import the task, run it, print its figures plus the process's peak RSS."""
    import importlib

    task, config = sys.argv[1], json.loads(sys.argv[2])
    module_name, function_name = task.rsplit(".", 1)
    function = getattr(importlib.import_module(f"benchmarks.{module_name}"), function_name)
    figures = function(**config)
    figures["peak_rss_mb"] = peak_rss_mb()
    print(RESULT_PREFIX + json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
