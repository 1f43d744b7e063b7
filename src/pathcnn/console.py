"""Terminal output: progress bars that stay quiet when output is not a terminal (CI, DVC logs)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")


def interactive() -> bool:
    """True when stderr is a terminal a person watches."""
    return sys.stderr.isatty()


def progress(items: Iterable[Item], description: str, total: int | None = None) -> Iterator[Item]:
    """Wrap an iterable in a progress bar on a terminal, and in nothing otherwise."""
    return iter(tqdm(items, desc=description, total=total, disable=not interactive(), leave=False))


def say(message: str) -> None:
    """One line of status for the person running the command."""
    print(message, file=sys.stderr, flush=True)
