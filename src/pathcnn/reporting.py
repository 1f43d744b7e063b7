"""Report rendering: number formatting, Markdown tables, example-patch grids, and self-contained HTML."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markdown_it import MarkdownIt

from pathcnn.figures import plt
from pathcnn.patchsets import patch_array

MISSING = "n/a"
IMAGE_SOURCE = re.compile(r'<img src="([^"]+\.png)"')
HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
    "table{border-collapse:collapse;margin:0.6em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}"
    "th{background:#eee}img{max-width:100%}code{background:#f4f4f4}"
)


def number(value: Any, digits: int = 3) -> str:
    """A metric with a fixed number of decimals, or n/a."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return MISSING
    return f"{value:.{digits}f}"


def p_value(value: Any) -> str:
    """A p-value in two significant digits (scientific below 0.001)."""
    if not isinstance(value, (int, float)):
        return MISSING
    return f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"


def interval(low: Any, high: Any) -> str:
    """A 95% interval as [low, high]."""
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return MISSING
    return f"[{number(low)}, {number(high)}]"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def example_grid(
    predictions: pd.DataFrame,
    manifest: pd.DataFrame,
    patches_dir: Path,
    class_names: tuple[str, ...],
    per_row: int,
    title: str,
) -> Any:
    """Most confident correct and wrong test patches of each class: one row per class and outcome."""
    located = predictions.merge(manifest[["patch_id", "index"]], on="patch_id", how="left")
    located["confidence"] = [row[f"prob_{row['predicted']}"] for _, row in located.iterrows()]
    rows = []
    for name in class_names:
        of_class = located[located["label"] == name]
        for outcome, picked in (("correct", of_class["predicted"] == name), ("wrong", of_class["predicted"] != name)):
            chosen = of_class[picked].sort_values(["confidence", "patch_id"], ascending=[False, True]).head(per_row)
            rows.append((f"{name} {outcome}", chosen))
    figure, axes = plt.subplots(len(rows), per_row, figsize=(1.5 * per_row, 1.65 * len(rows)), dpi=90, squeeze=False)
    for row_index, (label, chosen) in enumerate(rows):
        images = np.asarray(patch_array(patches_dir, chosen)) if len(chosen) else np.zeros((0, 1, 1, 3), np.uint8)
        for column in range(per_row):
            cell = axes[row_index][column]
            cell.set_xticks([])
            cell.set_yticks([])
            if column < len(chosen):
                record = chosen.iloc[column]
                cell.imshow(images[column])
                cell.set_title(f"{record['image_id']}: {record['predicted']} {record['confidence']:.2f}", fontsize=7)
            elif column == 0:
                cell.text(0.5, 0.5, "none", ha="center", va="center", fontsize=8, transform=cell.transAxes)
            else:
                cell.axis("off")
            if column == 0:
                cell.set_ylabel(label, fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def markdown_to_html(markdown: str, base_dir: Path, title: str) -> str:
    """A self-contained HTML page: the Markdown rendered, each PNG it links embedded as base64."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)

    def embed(match: re.Match[str]) -> str:
        data = base64.b64encode((base_dir / html.unescape(match.group(1))).read_bytes()).decode("ascii")
        return f'<img src="data:image/png;base64,{data}"'

    body = IMAGE_SOURCE.sub(embed, body)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{HTML_STYLE}</style></head><body>\n{body}</body></html>\n"
    )
