"""Assets made from `dbt_like_sql/`: one per model file, plus the export, which writes the
final pairs of every batch that passed its blocking checks."""

from typing import Any

import dagster as dg
import polars as pl

from prefgen_dagster.defs import metadata
from prefgen_dagster.defs.assets import GROUP, common_metadata
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.resources import PrefgenResource
from prefgen_dagster.export import dataset as export
from prefgen_dagster.export.card import dataset_card
from prefgen_dagster.judging.summary import histogram
from prefgen_dagster.sql.project import SqlFile, SqlProject, column_lineage
from prefgen_dagster.stages import pipeline_hash

EXPORT_GROUP = "export"


def build_model_asset(model: SqlFile, project: SqlProject) -> dg.AssetsDefinition:
    """A partitioned asset that runs the model's SELECT for the batch and replaces the
    batch's rows in the table of the same name. (Its code version, the SQL text and the
    values of its vars, is added in `graph.build_graph`.)"""
    deps = sorted({project.table_asset(ref) for ref in model.refs})

    @dg.asset(
        name=model.name,
        partitions_def=batches,
        group_name=GROUP,
        kinds={"duckdb", "sql"},
        deps=deps,
        description=f"SQL model `{model.path.name}`.\n\n" + _leading_comment(model.sql),
        metadata={"sql_file": dg.MetadataValue.path(str(model.path))},
    )
    def _model(context: dg.AssetExecutionContext, prefgen: PrefgenResource) -> dg.MaterializeResult:
        config, storage = prefgen.open()
        batch_id = context.partition_key
        frame = storage.query(*model.render(batch_id, config.sql_vars()))
        frame = frame.with_columns(pl.lit(batch_id).alias("batch_id"))
        storage.replace_partition(model.name, batch_id, frame)
        lineage = column_lineage(model, storage.column_types())
        meta = {
            **metadata.frame_metadata(frame),
            **common_metadata(config),
            "dagster/column_lineage": metadata.column_lineage(
                {
                    column: [(project.table_asset(table), name) for table, name in sources]
                    for column, sources in lineage.items()
                }
            ),
            **_pair_metadata(frame),
        }
        return dg.MaterializeResult(metadata=meta, data_version=metadata.data_version(frame))

    return _model


def _leading_comment(sql: str) -> str:
    lines = []
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[2:].strip())
    return "\n".join(lines)


def _pair_metadata(frame: pl.DataFrame) -> dict[str, Any]:
    """Distributions for any model that produces pairs (margin, origins, agreement)."""
    if not frame.height or "margin" not in frame.columns:
        return {}
    meta: dict[str, Any] = {
        "margin_histogram": dg.MetadataValue.json(histogram(frame["margin"].to_list(), 0.5))
    }
    for column, label in (("judge_agreement", "share"), ("chosen_origin", "origin")):
        if column in frame.columns:
            meta[column] = metadata.distribution(frame[column], label)
    if "dropped_because" in frame.columns:
        rule = frame["dropped_because"].str.split(":").list.first().fill_null("kept")
        meta["dropped_because"] = metadata.distribution(rule, "rule")
    return meta


def build_export_asset(project: SqlProject) -> dg.AssetsDefinition:
    """The unpartitioned export (its code version and automation condition are added in
    `graph.build_graph`)."""

    @dg.asset(
        name="preference_dataset",
        group_name=EXPORT_GROUP,
        kinds={"duckdb", "huggingface"},
        deps=["dpo_pairs"],
    )
    def _export(prefgen: PrefgenResource) -> dg.MaterializeResult:
        """The pairs of every batch whose blocking checks passed, as a `datasets` dataset on
        disk and Parquet in TRL's conversational format."""
        config, storage = prefgen.open()
        blocking = [check.name for check in project.checks if check.blocking]
        pairs, summary = export.collect_pairs(storage, blocking)
        records = export.to_trl_records(pairs, config.names_by_identity())
        card = dataset_card(records, summary, config, pipeline_hash(config))
        held = export.held_back_pairs(storage, summary["held_back_reasons"])
        paths = export.write_dataset(records, config.resolve(config.paths.export_dir), card, held)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(records),
                **common_metadata(config),
                "batches_exported": dg.MetadataValue.json(summary["batches_exported"]),
                "batches_held_back": dg.MetadataValue.json(summary["batches_held_back"]),
                "held_back_reasons": dg.MetadataValue.json(summary["held_back_reasons"]),
                "held_back_pairs": held.height,
                "pairs_dropped": summary["pairs_dropped"],
                "dataset_dir": dg.MetadataValue.path(paths["dataset_dir"]),
                "parquet": dg.MetadataValue.path(paths["parquet"]),
                "held_back_parquet": dg.MetadataValue.path(paths["held_back"]),
            }
        )

    return _export
