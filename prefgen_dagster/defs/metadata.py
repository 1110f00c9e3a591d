"""Materialization metadata: what a person needs to judge a batch from the Dagster UI."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import dagster as dg
import polars as pl

from prefgen_dagster.judge.figure import Plot, markdown
from prefgen_dagster.llm.stage import Markdown
from prefgen_dagster.storage.columns import describe
from prefgen_dagster.summaries import counts_table, markdown_table


def distribution(values: Iterable[Any], label: str) -> dg.MetadataValue:
    """Counts per value (NULL shown as `null`) as a small markdown table."""
    return dg.MetadataValue.md(counts_table(values, label))


def column_schema(table: str, types: dict[str, Any]) -> dg.TableSchema:
    """A table's (or SQL model's, or the export's) columns with their types and what each
    means (`storage/columns.py`)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, str(kind), description=describe(table, name))
            for name, kind in types.items()
        ]
    )


def frame_metadata(
    frame: pl.DataFrame, table: str, preview_columns: list[str] | None = None
) -> dict[str, Any]:
    """Row count, column schema and a preview of a frame written to `table`."""
    preview = frame.select(preview_columns) if preview_columns and frame.height else frame
    return {
        "dagster/row_count": frame.height,
        "dagster/column_schema": column_schema(table, dict(frame.schema)),
        "preview": dg.MetadataValue.md(markdown_table(preview)),
    }


def pairs_preview(records: list[dict[str, Any]], limit: int = 5) -> str:
    """The first exported pairs as a markdown table: the user's message, the two answers and
    their scores (the messages flattened to their text)."""
    rows = [
        {
            "prompt": record["prompt"][-1]["content"],
            "chosen": record["chosen"][0]["content"],
            "rejected": record["rejected"][0]["content"],
            "score_chosen": record["score_chosen"],
            "score_rejected": record["score_rejected"],
            "margin": record["margin"],
        }
        for record in records[:limit]
    ]
    return markdown_table(pl.DataFrame(rows), limit)


def plots(drawn: list[Plot]) -> dg.MetadataValue:
    """The plots as one markdown entry, each image embedded as a base64 PNG data URI with its
    caption below, so the asset page shows them with no file server."""
    return dg.MetadataValue.md(markdown(drawn, embed=True))


def column_lineage(deps: dict[str, list[tuple[str, str]]]) -> dg.TableColumnLineage:
    """`{column: [(upstream asset, upstream column), ...]}` as Dagster column lineage."""
    return dg.TableColumnLineage(
        deps_by_column={
            column: [dg.TableColumnDep(asset_key=dg.AssetKey(a), column_name=c) for a, c in sources]
            for column, sources in deps.items()
        }
    )


def data_version(frame: pl.DataFrame) -> dg.DataVersion:
    """A hash of the rows written, order-independent: the same rows give the same version,
    so Dagster can tell downstream assets that nothing changed."""
    if frame.is_empty():
        return dg.DataVersion("empty")
    # CSV has no lists: a list column (an embedding) is written as its values joined.
    flat = frame.with_columns(
        pl.col(name).list.eval(pl.element().cast(pl.String)).list.join(" ")
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.List)
    )
    canonical = flat.select(sorted(flat.columns)).sort(by=sorted(flat.columns)).write_csv()
    return dg.DataVersion(hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20])


def from_report(entries: dict[str, Any]) -> dict[str, Any]:
    """A stage's report (`llm.stage.Report.metadata`: plain values) as Dagster metadata:
    `Markdown` as markdown, the `Plot`s under "plots" embedded, dicts and lists as JSON,
    numbers, strings and None as they are."""
    converted: dict[str, Any] = {}
    for key, value in entries.items():
        if key == "plots":
            converted[key] = plots(value)
        elif isinstance(value, Markdown):
            converted[key] = dg.MetadataValue.md(value.text)
        elif isinstance(value, (dict, list)):
            converted[key] = dg.MetadataValue.json(value)
        else:
            converted[key] = value
    return converted
