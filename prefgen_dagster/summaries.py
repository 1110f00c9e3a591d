"""Plain summaries of a stage's rows for people: the first rows as a markdown table, counts
per value, counts per bin. Pure: the Dagster metadata, the stages' reports and the CLI show
them."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import polars as pl

_CELL_CHARS = 80


def markdown_table(frame: pl.DataFrame, limit: int = 5) -> str:
    """The first rows of a frame as a markdown table, long cells shortened."""
    if frame.is_empty():
        return "_no rows_"
    head = frame.head(limit)
    lines = [
        "| " + " | ".join(head.columns) + " |",
        "|" + "---|" * len(head.columns),
    ]
    for row in head.iter_rows():
        cells = []
        for value in row:
            text = "" if value is None else str(value).replace("\n", " ").replace("|", "\\|")
            cells.append(text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def counts_table(values: Iterable[Any], label: str) -> str:
    """Counts per value (NULL shown as `null`) as a small markdown table."""
    counts = Counter("null" if v is None else v for v in values)
    rows = sorted(counts.items(), key=lambda item: str(item[0]))
    lines = [f"| {label} | count |", "|---|---|", *(f"| {k} | {n} |" for k, n in rows)]
    return "\n".join(lines)


def histogram(values: list[float | None], width: float) -> dict[str, int]:
    """Counts per bin of `width` (labelled by the bin's lower edge), plus `null`."""
    counts: dict[str, int] = {}
    for value in values:
        # The epsilon keeps 0.3 / 0.1 = 2.9999999999999996 in the 0.30 bin.
        label = "null" if value is None else f"{math.floor(value / width + 1e-9) * width:.2f}"
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))
